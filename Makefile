# mmkp: set-up, tests and the quick-start. Every target builds what it needs on a fresh machine and reuses it after.
#
#   make quickstart   train CenterNet-DLA-34 on BCCD, evaluate on BCCD val, draw the detections
#   make test         the test suite (what CI runs)
#   make lint         ruff (pycodestyle + pyflakes, 120 columns; settings in pyproject.toml), also run by CI
#
# GPU users: pick the CUDA builds of torch and mmcv, e.g.
#   make test TORCH_SPEC="torch==2.1.2" TORCH_INDEX=https://download.pytorch.org/whl/cu121 \
#             MMCV_FIND_LINKS=https://download.openmmlab.com/mmcv/dist/cu121/torch2.1/index.html
# (mmcv then installs from OpenMMLab's prebuilt wheel; without a wheel it is compiled with CUDA ops when nvcc is
# found; mmkp._ext is compiled with CUDA kernels when torch has CUDA.)

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
MMCV_SPEC ?= mmcv==2.1.0
MMCV_FIND_LINKS ?=
# absolute, so that tools run from another folder (mim, tests in tmp dirs) find the data too
MMKP_DATA ?= $(abspath $(shell if [ -d ../shared/data ]; then echo ../shared/data; else echo data; fi))
export MMKP_DATA
PYTEST_ARGS ?=

DEPS_STAMP := $(VENV)/.mmkp-deps
INSTALL_STAMP := $(VENV)/.mmkp-install
EXT_SOURCES := $(shell find mmkp/ops/csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' 2>/dev/null)

.PHONY: all install test test-all lint quickstart check-cuda-build clean-ext help

all: install

help:
	@sed -n '1,11p' Makefile

$(PY):
	$(PYTHON) -m venv $(VENV)

# Third-party stack. setuptools 80.x: >=77.0.3 for torch, <81 for pkg_resources (mmcv, mmengine, mim).
# mmcv is built without isolation so that its ops (mmcv._ext) compile against the installed torch.
$(DEPS_STAMP): requirements/build.txt requirements/mminstall.txt requirements/runtime.txt requirements/tests.txt | $(PY)
	$(PIP) install -q -r requirements/build.txt
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple) "$(TORCH_SPEC)"
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt "mmengine==0.10.7"
	MMCV_WITH_OPS=1 $(PIP) install --no-build-isolation $(if $(MMCV_FIND_LINKS),-f $(MMCV_FIND_LINKS)) "$(MMCV_SPEC)"
	$(PIP) install -q "mmdet==3.3.0" openmim
	# openmim pulls openxlab, which pins an old setuptools: put 80.x back.
	$(PIP) install -q -r requirements/build.txt
	$(PY) -c "import mmcv._ext, mmcv.ops, mmdet, mim; print('mmcv', mmcv.__version__, 'with ops; mmdet', mmdet.__version__)"
	touch $@

# mmkp itself, editable, with its compiled ops (mmkp/_ext*.so) and mmkp/.mim (links to configs/ and tools/).
# mim and mmengine look for an installed package at <dist location>/mmkp, which a PEP 660 editable install (the
# only kind setuptools >= 80 makes) does not create: a link site-packages/mmkp -> ./mmkp gives them the checkout.
$(INSTALL_STAMP): $(DEPS_STAMP) setup.py $(EXT_SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) setup.py -q build_ext --inplace
	ln -sfn "$(CURDIR)/mmkp" "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mmkp"
	$(PY) -c "import mmkp, mmkp.ops; from mim.utils import get_installed_path as p; import os; \
	assert os.path.isdir(os.path.join(p('mmkp'), '.mim', 'configs')); print('mmkp', mmkp.__version__)"
	touch $@

install: $(INSTALL_STAMP)

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Everything, including the slow marker (full-budget trainings).
test-all: install
	$(PY) -m pytest tests -m "" $(PYTEST_ARGS)

# The linter alone: needs neither torch nor the build.
LINT_STAMP := $(VENV)/.mmkp-lint
$(LINT_STAMP): requirements/lint.txt | $(PY)
	$(PIP) install -q -r requirements/lint.txt
	touch $@

lint: $(LINT_STAMP)
	$(VENV)/bin/ruff check .

quickstart: install
	$(PY) tools/misc/quickstart.py

# Compile mmkp's CUDA kernels against the CUDA build of torch 2.14.1 (on this machine's disk) with the local nvcc,
# in a separate venv (.venv-cuda), so that a CUDA compile error fails CI on machines without a GPU.
check-cuda-build:
	PYTHON=$(PYTHON) bash tools/misc/check_cuda_build.sh

clean-ext:
	rm -f mmkp/_ext*.so $(INSTALL_STAMP)
