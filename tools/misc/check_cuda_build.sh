#!/usr/bin/env bash
# Compile check of mmkp's CUDA kernels (mmkp/ops/csrc/cuda/*.cu) on a machine without a GPU.
#
# Creates -- or reuses -- a separate virtual environment (default .venv-cuda, gitignored by `.venv-*/`) holding a
# CUDA build of torch (default torch==2.14.1, CUDA 13, matching a local nvcc 13.x), then builds mmkp._ext with
# FORCE_CUDA=1 into a temporary directory, so the CPU build in the tree (mmkp/_ext*.so, build/) is untouched.
# Exits non-zero when a source fails to compile. Nothing is run on a GPU.
#
# Environment (all optional):
#   PYTHON                 interpreter for the venv                 (default: python3)
#   CUDA_VENV              venv path                                (default: <repo>/.venv-cuda)
#   CUDA_TORCH_SPEC        torch requirement for the venv           (default: torch==2.14.1)
#   TORCH_CUDA_ARCH_LIST   GPU architectures to compile for         (default: "8.0;9.0")
#   CUDA_HOME              CUDA toolkit root                        (default: derived from `which nvcc`)
#   MAX_JOBS               parallel compile jobs                    (default: 2)
#   KEEP_BUILD=1           keep the temporary build directory and print its path
#
# Usage: tools/misc/check_cuda_build.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
CUDA_VENV="${CUDA_VENV:-$ROOT/.venv-cuda}"
CUDA_TORCH_SPEC="${CUDA_TORCH_SPEC:-torch==2.14.1}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"

log() { echo "[check_cuda_build] $*"; }

# 1. nvcc and CUDA_HOME (a toolkit root holds bin/nvcc and include/cuda_runtime.h; `nvcc` on PATH may be a
#    wrapper script elsewhere, so ask nvcc itself for its TOP directory when the path does not tell)
is_toolkit() { [[ -n "$1" && -x "$1/bin/nvcc" && -f "$1/include/cuda_runtime.h" ]]; }
if [[ -z "${CUDA_HOME:-}" ]]; then
    NVCC="$(command -v nvcc || true)"
    [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
    if [[ -z "$NVCC" ]]; then
        log "ERROR: nvcc not found (put it on PATH or set CUDA_HOME)"
        exit 2
    fi
    CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$NVCC")")")"
    if ! is_toolkit "$CUDA_HOME"; then
        top="$("$NVCC" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n 1)"
        [[ -n "$top" ]] && CUDA_HOME="$(readlink -f "$top")"
    fi
    if ! is_toolkit "$CUDA_HOME" && is_toolkit /usr/local/cuda; then
        CUDA_HOME=/usr/local/cuda
    fi
fi
if ! is_toolkit "$CUDA_HOME"; then
    log "ERROR: no CUDA toolkit at CUDA_HOME=$CUDA_HOME (bin/nvcc, include/cuda_runtime.h); set CUDA_HOME"
    exit 2
fi
export CUDA_HOME
export PATH="$CUDA_HOME/bin:$PATH"
log "nvcc: $("$CUDA_HOME/bin/nvcc" --version | tail -n 2 | head -n 1) (CUDA_HOME=$CUDA_HOME)"

# 2. the venv with a CUDA torch (reused when it already imports the requested torch with CUDA)
VPY="$CUDA_VENV/bin/python"
want_version=""
[[ "$CUDA_TORCH_SPEC" == torch==* ]] && want_version="${CUDA_TORCH_SPEC#torch==}"
venv_ok() {
    [[ -x "$VPY" ]] && "$VPY" - "$want_version" <<'EOF' >/dev/null 2>&1
import sys
import torch
import setuptools  # noqa: F401
import ninja  # noqa: F401
want = sys.argv[1]
ok = torch.version.cuda is not None and (not want or torch.__version__.split('+')[0] == want)
sys.exit(0 if ok else 1)
EOF
}
if venv_ok; then
    log "reusing $CUDA_VENV"
else
    log "creating $CUDA_VENV with $CUDA_TORCH_SPEC (several GB; takes a few minutes the first time)"
    [[ -x "$VPY" ]] || "$PYTHON" -m venv "$CUDA_VENV"
    "$VPY" -m pip install -q --upgrade "setuptools>=77.0.3,<81" wheel ninja numpy
    "$VPY" -m pip install -q "$CUDA_TORCH_SPEC"
    venv_ok || { log "ERROR: $CUDA_VENV does not import a CUDA build of torch"; exit 2; }
fi
log "torch $("$VPY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'); arch list $TORCH_CUDA_ARCH_LIST"

# A minimal toolkit (nvcc + cudart only) lacks the library headers torch's CUDA headers include (cusparse.h,
# cublas_v2.h, ...); the nvidia-* wheels torch depends on ship them: put their include dirs on the search path.
if [[ ! -f "$CUDA_HOME/include/cusparse.h" ]]; then
    extra_includes="$("$VPY" - <<'EOF'
import glob
import os.path as osp
import sysconfig
site = sysconfig.get_paths()['purelib']
print(':'.join(sorted(d for d in glob.glob(osp.join(site, 'nvidia', '*', 'include')) if osp.isdir(d))))
EOF
)"
    if [[ -n "$extra_includes" ]]; then
        log "toolkit lacks library headers; adding $extra_includes"
        export CPATH="$extra_includes${CPATH:+:$CPATH}"
        NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-}"
        IFS=':' read -r -a include_dirs <<<"$extra_includes"
        for d in "${include_dirs[@]}"; do NVCC_APPEND_FLAGS+=" -I$d"; done
        export NVCC_APPEND_FLAGS
    fi
fi

# 3. compile into a temporary directory
BUILD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mmkp-cuda-build.XXXXXX")"
cleanup() {
    if [[ "${KEEP_BUILD:-0}" == "1" ]]; then
        log "build kept in $BUILD_DIR"
    else
        rm -rf "$BUILD_DIR"
    fi
}
trap cleanup EXIT

cd "$ROOT"
start=$(date +%s)
set +e
FORCE_CUDA=1 MMKP_WITH_OPS=1 "$VPY" setup.py build_ext --build-lib "$BUILD_DIR/lib" --build-temp "$BUILD_DIR/temp" \
    >"$BUILD_DIR/build.log" 2>&1
status=$?
set -e
elapsed=$(( $(date +%s) - start ))
cp "$BUILD_DIR/build.log" "${TMPDIR:-/tmp}/mmkp-cuda-build.log" 2>/dev/null || true
if [[ $status -ne 0 ]]; then
    grep -E "error|Error" "$BUILD_DIR/build.log" | head -n 40 || true
    tail -n 30 "$BUILD_DIR/build.log"
    log "FAILED after ${elapsed}s (full log: ${TMPDIR:-/tmp}/mmkp-cuda-build.log)"
    exit 1
fi
so="$(find "$BUILD_DIR/lib" -name '_ext*.so' | head -n 1)"
if [[ -z "$so" ]]; then
    log "FAILED: no _ext*.so was produced (full log: ${TMPDIR:-/tmp}/mmkp-cuda-build.log)"
    exit 1
fi
cu_objects=$(find "$BUILD_DIR/temp" -name '*.o' -path '*/csrc/cuda/*' | wc -l)
if [[ "$cu_objects" -eq 0 ]]; then
    log "FAILED: no CUDA object was compiled (is MMKP_WITH_CUDA wired in setup.py?)"
    exit 1
fi
log "OK: $cu_objects CUDA object(s) compiled and linked into $(basename "$so") in ${elapsed}s"
