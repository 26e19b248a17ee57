"""A training run killed with SIGKILL mid-epoch and resumed with ``--resume`` ends with exactly the weights of the
uninterrupted run (issue 12, item 4).

Both runs: ``tools/train.py`` on the quick CenterNet-R18 config (its random crops, flips and photometric
transforms included), 8 BCCD train images, batch 4, 3 epochs, a checkpoint every epoch, seed 0 with deterministic
kernels, no workers, 1 thread. The second run is killed (SIGKILL) in epoch 2, after ``epoch_1.pth`` is complete,
and resumed with ``--resume`` (the latest complete checkpoint, ``last_checkpoint``). The final state dicts are
compared tensor by tensor with ``torch.equal``. ``RandomStateHook`` (mmkp's runtime) is what makes the data
pipeline draw the same numbers after the resume; the last test shows the weights differ without it.
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

import mmkp  # noqa: F401  (the checkpoint allowlist for weights_only loading)

from tests.conftest import REPO, run_tool

CONFIG = 'configs/centernet/centernet_r18_1xb8-quick_bccd.py'
OPTIONS = [
    'train_cfg.max_epochs=3', 'train_cfg.val_interval=100', 'train_dataloader.batch_size=4',
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', 'train_dataloader.dataset.indices=8',
    'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1',
    'default_hooks.logger.interval=1', 'randomness.seed=0', 'randomness.deterministic=True'
]


def train(work_dir, *extra):
    return run_tool([sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work_dir), *extra, '--cfg-options',
                     *OPTIONS])


def killed_in_epoch_2(work_dir):
    """Start the run, SIGKILL it once epoch 2 has begun (epoch_1.pth complete and named by last_checkpoint)."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                             *OPTIONS], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    last = osp.join(str(work_dir), 'last_checkpoint')
    deadline = time.time() + 600
    try:
        while not (osp.isfile(last) and open(last).read().strip().endswith('epoch_1.pth')):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, 'no epoch_1.pth within 10 minutes'
            time.sleep(0.05)
        time.sleep(1.0)  # into epoch 2 (an iteration takes about 1-2 s here)
        assert proc.poll() is None, 'the run ended before it could be killed in epoch 2'
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not osp.exists(osp.join(str(work_dir), 'epoch_2.pth'))


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, bccd_root):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    train(work_dir)
    return weights(osp.join(str(work_dir), 'epoch_3.pth'))


def test_killed_and_resumed_run_ends_with_the_same_weights(uninterrupted, tmp_path):
    killed_in_epoch_2(tmp_path)
    train(tmp_path, '--resume')
    resumed = weights(osp.join(str(tmp_path), 'epoch_3.pth'))
    assert list(resumed) == list(uninterrupted)
    different = [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]
    assert not different, f'{len(different)} of {len(resumed)} tensors differ, e.g. {different[:5]}'


def test_without_the_random_states_the_resumed_run_differs(uninterrupted, tmp_path):
    """The control: the same kill, then the saved generator states removed from epoch_1.pth (a checkpoint written
    without RandomStateHook: mmengine alone) -- the resumed run warns and does not end bit-exact, so the test above
    can fail."""
    killed_in_epoch_2(tmp_path)
    path = osp.join(str(tmp_path), 'epoch_1.pth')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    assert ckpt['meta'].pop('rng_state') is not None
    torch.save(ckpt, path)
    proc = train(tmp_path, '--resume')
    assert 'holds no random-generator states' in proc.stdout + proc.stderr
    resumed = weights(osp.join(str(tmp_path), 'epoch_3.pth'))
    assert any(not torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
