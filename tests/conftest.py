"""Shared fixtures: where the real datasets are, and a helper to run the tools."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if not os.environ.get('MMKP_DATA'):
    os.environ['MMKP_DATA'] = osp.join(REPO, '..', 'shared', 'data') if osp.isdir(
        osp.join(REPO, '..', 'shared', 'data')) else osp.join(REPO, 'data')
# absolute: several tests run tools from temporary folders
os.environ['MMKP_DATA'] = DATA_ROOT = osp.abspath(os.environ['MMKP_DATA'])
BCCD = osp.join(DATA_ROOT, 'bccd')
#: names and shapes of the tensors of the originals' released checkpoints (../shared/reference; never copied here)
ORIGINAL_CHECKPOINTS = os.environ.get('MMKP_REFERENCE_CHECKPOINTS') or osp.join(
    REPO, '..', 'shared', 'reference', 'original_checkpoints')
COCO128 = osp.join(DATA_ROOT, 'coco128')
#: every family's quick BCCD config (relative to the repository), for the tests that run each of them
QUICK_CONFIGS = {
    'centernet': 'configs/centernet/centernet_r18_1xb8-quick_bccd.py',
    'fcos': 'configs/fcos/fcos_r18_fpn_gn-head_1xb8-quick_bccd.py',
    'cornernet': 'configs/cornernet/cornernet_hourglass-d3w32_1xb8-crop159-quick_bccd.py',
    'cornernet-squeeze':
    'configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze-d3w32_1xb8-crop255-quick_bccd.py',
    'centernet-triplet': 'configs/centernet_triplet/centernet-triplet_hourglass-d3w32_1xb8-crop159-quick_bccd.py',
    'cornernet-saccade': 'configs/cornernet_saccade/cornernet-saccade_hourglass54-d3w32_1xb8-crop255-quick_bccd.py',
}


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long runs (full training budgets); run with -m slow')
    config.addinivalue_line('markers', 'cuda: needs a CUDA GPU; skipped without one')
    config.addinivalue_line('markers', 'e2e: trains on real data')


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def bccd_root():
    if not osp.isdir(BCCD):
        pytest.fail(f'BCCD not found at {BCCD}: set MMKP_DATA to the folder that holds bccd/ and coco128/')
    return BCCD


@pytest.fixture(scope='session')
def coco128_root():
    if not osp.isdir(COCO128):
        pytest.fail(f'coco128 not found at {COCO128}: set MMKP_DATA to the folder that holds bccd/ and coco128/')
    return COCO128


def run_tool(args, cwd=REPO, timeout=900, env=None):
    """Run a command with the venv's bin first on PATH; return the CompletedProcess, failing with its output."""
    full_env = dict(os.environ)
    full_env['PATH'] = osp.dirname(sys.executable) + os.pathsep + full_env.get('PATH', '')
    full_env.setdefault('OMP_NUM_THREADS', '1')
    if env:
        full_env.update(env)
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'command failed ({proc.returncode}): {" ".join(map(str, args))}\n'
                    f'--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


@pytest.fixture(autouse=True)
def _drop_checkpoints_after_the_test(request):
    """Delete the checkpoints (``*.pth``) a test wrote under its ``tmp_path`` once the test is over.

    The every-config, converter, fine-tuning and resume tests write checkpoints of up to 2.4 GB each (40 GB over
    the suite; a CI machine ran out of disk on them). The directories themselves stay: mmengine's visualizer is a
    process-wide instance (mmdet's runtime names it ``'visualizer'``) that keeps writing into the ``vis_data``
    folder of the first runner's work_dir, so deleting whole ``tmp_path`` folders (pytest's
    ``tmp_path_retention_policy = failed``) breaks every later runner of the session.
    """
    root = request.getfixturevalue('tmp_path') if 'tmp_path' in request.fixturenames else None
    yield
    if root is None:
        return
    for path in root.rglob('*.pth'):
        if path.is_file():
            path.unlink()
