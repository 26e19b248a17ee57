"""Interrupted checkpoint saves (issue 12, item 4, atomic-save part): ``AtomicCheckpointHook`` through the Runner.

Two epochs of one iteration each (quick CenterNet-R18, 2 BCCD images, batch 2), a checkpoint per epoch, one kept.
The second save "crashes" half-way: mmengine's local file backend writes half the bytes and the process "dies"
(a ``BaseException``, which no ``except Exception`` catches). The previous checkpoint must still load, and
``last_checkpoint`` must name it, so that ``resume=True`` (``tools/train.py --resume``) continues from it.
"""
import pytest
import torch
from mmengine.fileio.backends import LocalBackend
from mmengine.runner.checkpoint import _load_checkpoint

import mmkp.engine.hooks as hooks_module
from tests.test_reliability.helpers import build_runner, tiny_cfg


class _Killed(BaseException):
    """The simulated kill."""


def _two_epoch_cfg(work_dir, name, hook_type, resume=False):
    return tiny_cfg(
        work_dir,
        name=name,
        images=2,
        max_epochs=2,
        resume=resume,
        default_hooks=dict(checkpoint=dict(type=hook_type, interval=1, max_keep_ckpts=1)))


def crash_during_second_save(tmp_path, hook_type, monkeypatch):
    """Train until the epoch-2 save dies half-way; return the work dir and the bytes of epoch_1.pth."""
    work_dir = tmp_path / 'run'
    put = LocalBackend.put
    written = {}

    def dying_put(self, obj, filepath):
        if 'epoch_2' in str(filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise _Killed(f'killed while writing {filepath}')
        put(self, obj, filepath)
        written[str(filepath)] = obj

    monkeypatch.setattr(LocalBackend, 'put', dying_put)
    runner = build_runner(_two_epoch_cfg(work_dir, f'r_atomic_{hook_type}', hook_type))
    with pytest.raises(_Killed):
        runner.train()
    monkeypatch.setattr(LocalBackend, 'put', put)
    return work_dir, written


def test_crash_during_save_keeps_previous_checkpoint_and_resume_uses_it(tmp_path, monkeypatch):
    work_dir, written = crash_during_second_save(tmp_path, 'AtomicCheckpointHook', monkeypatch)
    epoch_1 = work_dir / 'epoch_1.pth'
    # written under a temporary name in the same folder, then renamed
    assert [p.rsplit('/', 1)[-1].split('-')[0] for p in written if 'epoch' in p] == ['.epoch_1.pth.tmp']
    assert all(p.startswith(str(work_dir) + '/') for p in written)
    assert sorted(p.name for p in work_dir.glob('*.pth*')) == ['epoch_1.pth']  # no half file under a real name
    assert (work_dir / 'last_checkpoint').read_text() == str(epoch_1)
    ckpt = _load_checkpoint(str(epoch_1), map_location='cpu')
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 1

    runner = build_runner(_two_epoch_cfg(work_dir, 'r_atomic_resumed', 'AtomicCheckpointHook', resume=True))
    runner.train()
    assert runner.epoch == 2 and runner.iter == 2  # resumed after epoch 1, trained epoch 2 only
    epoch_2 = work_dir / 'epoch_2.pth'
    assert (work_dir / 'last_checkpoint').read_text() == str(epoch_2)
    assert sorted(p.name for p in work_dir.glob('*.pth*')) == ['epoch_2.pth']  # max_keep_ckpts=1, after the save
    final = torch.load(epoch_2, map_location='cpu', weights_only=True)
    assert final['meta']['epoch'] == 2 and final['meta']['iter'] == 2
    assert any(not torch.equal(final['state_dict'][k], ckpt['state_dict'][k]) for k in ckpt['state_dict'])


def test_atomic_text_and_temporary_names(tmp_path, monkeypatch):
    """``last_checkpoint`` is replaced whole: a crash before the rename leaves the old text."""
    path = tmp_path / 'last_checkpoint'
    hooks_module.atomic_write_text(str(path), 'a/epoch_1.pth')

    def dying_replace(src, dst):
        raise _Killed

    monkeypatch.setattr(hooks_module.os, 'replace', dying_replace)
    with pytest.raises(_Killed):
        hooks_module.atomic_write_text(str(path), 'a/epoch_2.pth')
    assert path.read_text() == 'a/epoch_1.pth'


def test_best_checkpoint_is_written_through_a_temporary_file(tmp_path, monkeypatch):
    """``save_best``: the best checkpoint goes through ``save_checkpoint_atomically`` too (and loads)."""
    from mmengine.config import Config

    from tests.test_reliability.helpers import CONFIG
    full = Config.fromfile(CONFIG)
    cfg = tiny_cfg(tmp_path / 'best', name='r_atomic_best', images=2, max_epochs=1,
                   default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=1,
                                                      save_best='coco/bbox_mAP', rule='greater')))
    cfg.merge_from_dict({'train_cfg.val_interval': 1})
    cfg.val_cfg = full.val_cfg
    cfg.val_evaluator = full.val_evaluator
    cfg.val_dataloader = full.val_dataloader
    cfg.merge_from_dict({'val_dataloader.dataset.indices': 2, 'val_dataloader.batch_size': 2,
                         'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False})
    names = []
    atomic = hooks_module.save_checkpoint_atomically

    def recording(runner, out_dir, filename, **kwargs):
        names.append(filename)
        return atomic(runner, out_dir, filename, **kwargs)

    monkeypatch.setattr(hooks_module, 'save_checkpoint_atomically', recording)
    runner = build_runner(cfg)
    runner.train()
    # mmengine saves epoch_1 again after a new best, to record it in the message hub
    assert names == ['epoch_1.pth', 'best_coco_bbox_mAP_epoch_1.pth', 'epoch_1.pth'], names
    work_dir = tmp_path / 'best'
    assert sorted(p.name for p in work_dir.glob('*.pth*')) == ['best_coco_bbox_mAP_epoch_1.pth', 'epoch_1.pth']
    best = torch.load(work_dir / 'best_coco_bbox_mAP_epoch_1.pth', map_location='cpu', weights_only=True)
    assert best['meta']['epoch'] == 1
    assert 'save_checkpoint' not in vars(runner)  # the instance-level patch was removed
