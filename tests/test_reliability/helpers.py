"""A tiny real training run for the reliability tests: the quick CenterNet-R18 config on a few BCCD images."""
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

from tests.conftest import REPO

CONFIG = osp.join(REPO, 'configs/centernet/centernet_r18_1xb8-quick_bccd.py')


def tiny_cfg(work_dir, name, images=4, batch_size=2, max_epochs=1, **overrides):
    """The quick CenterNet-R18 config: ``images`` train images, batch ``batch_size``, no validation, no workers.

    ``name`` is the experiment name (unique per runner: mmengine shares the logger and message hub of runners of
    one name). ``overrides`` are merged into the config (``Config.merge_from_dict``, dotted keys allowed).
    """
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name
    cfg.merge_from_dict({
        'train_dataloader.batch_size': batch_size,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.batch_sampler': None,
        'train_dataloader.sampler.shuffle': False,
        'train_dataloader.dataset.indices': images,
        'train_cfg.max_epochs': max_epochs,
        'train_cfg.val_interval': max_epochs + 1,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'randomness.seed': 0,
    })
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler = None
    cfg.visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
    cfg.log_level = 'WARNING'
    cfg.merge_from_dict(overrides)
    return cfg


def build_runner(cfg):
    return Runner.from_cfg(cfg)
