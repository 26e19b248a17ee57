"""The tools on real data: train -> test -> resume, checkpoints on torch >= 2.6, distributed CPU training, mim.

One tiny training run (a few iterations of the quick CenterNet-R18 config on BCCD) is shared by the tests of this
module.
"""
import glob
import os
import os.path as osp
import pickle
import re
import shutil
import sys

import pytest
import torch

from tests.conftest import REPO, run_tool

CONFIG = 'configs/centernet/centernet_r18_1xb8-quick_bccd.py'
#: 4 val / test images, batch 2, no workers
EVAL = [
    f'{split}_dataloader.{key}' for split in ('val', 'test')
    for key in ('batch_size=2', 'num_workers=0', 'persistent_workers=False', 'dataset.indices=4')
]
#: one epoch of 4 train images, batch 2 (2 iterations), evaluated at its end
TINY = [
    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', 'train_dataloader.dataset.indices=4',
    'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1', *EVAL
]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, bccd_root):
    """Train 2 iterations (one epoch of 4 images, batch 2) and return the work dir."""
    work_dir = tmp_path_factory.mktemp('train')
    run_tool([sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work_dir), '--cfg-options', *TINY])
    assert osp.isfile(work_dir / 'epoch_1.pth')
    return work_dir


def test_checkpoint_loads_with_weights_only(trained):
    """mmengine checkpoints hold HistoryBuffer and numpy objects: importing mmkp makes them load safely."""
    import mmkp  # noqa: F401
    ckpt = torch.load(trained / 'epoch_1.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2 and 'state_dict' in ckpt and 'message_hub' in ckpt
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(trained / 'epoch_1.pth'))
    allowed = {f'{getattr(g[0] if isinstance(g, tuple) else g, "__module__", "")}.'
               f'{getattr(g[0] if isinstance(g, tuple) else g, "__qualname__", "")}'
               for g in torch.serialization.get_safe_globals()}
    allowed |= {g[1] for g in torch.serialization.get_safe_globals() if isinstance(g, tuple)}
    assert set(unsafe) <= allowed, set(unsafe) - allowed


def test_foreign_global_still_refused(tmp_path):
    """A checkpoint that would call os.system on load is refused, with mmkp imported."""
    import mmkp  # noqa: F401

    class Evil:

        def __reduce__(self):
            return (os.system, ('echo pwned',))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': Evil()}, path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        torch.load(path, weights_only=True)


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path):
    """Checkpoints hold getattr(HistoryBuffer, 'min'); any other getattr is refused."""
    import mmkp  # noqa: F401
    from mmengine.logging import HistoryBuffer

    class Reach:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    class Stat:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, 'mean'))

    torch.save({'ok': Stat()}, tmp_path / 'ok.pth')
    assert torch.load(tmp_path / 'ok.pth', weights_only=True)['ok'] is HistoryBuffer.mean
    torch.save({'bad': Reach()}, tmp_path / 'bad.pth')
    with pytest.raises(pickle.UnpicklingError, match='is not allowed'):
        torch.load(tmp_path / 'bad.pth', weights_only=True)


def test_test_tool_from_checkpoint(trained, tmp_path):
    out = tmp_path / 'results.pkl'
    proc = run_tool([
        sys.executable, 'tools/test.py', CONFIG,
        str(trained / 'epoch_1.pth'), '--work-dir',
        str(tmp_path), '--out',
        str(out), '--show-dir', 'vis', '--cfg-options', *EVAL
    ])
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    assert out.is_file()
    drawn = glob.glob(str(tmp_path / '**' / 'vis' / '*.jpg'), recursive=True)
    assert len(drawn) == 4


def test_resume_continues_at_the_right_iteration(trained, tmp_path):
    work_dir = tmp_path / 'resume'
    shutil.copytree(trained, work_dir)
    options = [o for o in TINY if not o.startswith('train_cfg.max_epochs')] + ['train_cfg.max_epochs=2']
    proc = run_tool([
        sys.executable, 'tools/train.py', CONFIG, '--work-dir',
        str(work_dir), '--resume', str(work_dir / 'epoch_1.pth'), '--cfg-options', *options
    ])
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 2' in log
    assert re.search(r'Epoch\(train\) +\[2\]\[1/2\]', log), log[-3000:]
    ckpt = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 4 and ckpt['meta']['epoch'] == 2


def test_dist_train_two_cpu_processes(tmp_path, bccd_root):
    """tools/dist_train.sh CONFIG 2 on the CPU: two gloo ranks train and the checkpoint loads."""
    work_dir = tmp_path / 'dist'
    options = [o for o in TINY if 'train_dataloader.dataset.indices' not in o] + ['train_dataloader.dataset.indices=8']
    proc = run_tool(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
                     str(work_dir), '--cfg-options', *options],
                    env={'PORT': '29533', 'PYTHON': sys.executable})
    log = proc.stdout + proc.stderr
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log, log[-3000:]
    # 8 images split over 2 ranks, batch 2 -> 2 iterations per epoch on each rank (4 on a single process);
    # torchrun fails the command when any rank fails
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', log), log[-3000:]
    import mmkp  # noqa: F401
    ckpt = torch.load(work_dir / 'epoch_1.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])


def test_destroy_distributed_ends_the_process_group(tmp_path):
    """tools/train.py and tools/test.py end a distributed run with destroy_distributed (a gloo group left to the
    interpreter's shutdown can abort the process after the last epoch)."""
    import torch.distributed as dist

    from mmkp.utils import destroy_distributed
    assert not dist.is_initialized()
    assert destroy_distributed() is False  # no group: nothing to do
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    assert dist.is_initialized()
    assert destroy_distributed() is True
    assert not dist.is_initialized()
    for tool in ('tools/train.py', 'tools/test.py'):
        with open(osp.join(REPO, tool)) as f:
            source = f.read()
        assert re.search(r'runner\.(train|test)\(\)\n +destroy_distributed\(\)', source), tool


def test_mim_test(trained, tmp_path):
    """`mim test mmkp CONFIG --checkpoint CKPT` finds mmkp's config and tools/test.py."""
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    proc = run_tool([
        mim, 'test', 'mmkp', osp.basename(CONFIG), '--checkpoint',
        str(trained / 'epoch_1.pth'), '--work-dir',
        str(tmp_path), '--cfg-options', *EVAL
    ], cwd=str(tmp_path))
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr


def test_mim_train(tmp_path, bccd_root):
    """`mim train mmkp CONFIG` runs mmkp's tools/train.py through mmkp/.mim."""
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    run_tool([mim, 'train', 'mmkp', osp.basename(CONFIG), '--work-dir', str(tmp_path), '--cfg-options', *TINY],
             cwd=str(tmp_path))
    assert osp.isfile(tmp_path / 'epoch_1.pth')
