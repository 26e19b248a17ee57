"""The quick FCOS config learns on real images: it overfits 8 BCCD training images (targets, losses and decoding)."""
import json
import os.path as osp
import time

import pytest
from mmengine.config import Config, ConfigDict

from tests.conftest import REPO

CONFIG = osp.join(REPO, 'configs', 'fcos', 'fcos_r18_fpn_gn-head_1xb8-quick_bccd.py')
NUM_IMAGES = 8
MAX_ITERS = 60  # one batch of the 8 images per iteration
LR = 4e-3


def subset_annotations(bccd_root, out_file, num_images):
    """The first ``num_images`` images of BCCD train and their boxes, as a COCO json (train and evaluation set)."""
    with open(osp.join(bccd_root, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    images = coco['images'][:num_images]
    ids = {img['id'] for img in images}
    coco = dict(coco, images=images, annotations=[a for a in coco['annotations'] if a['image_id'] in ids])
    with open(out_file, 'w') as f:
        json.dump(coco, f)
    return len(coco['annotations'])


@pytest.mark.e2e
def test_quick_config_overfits_eight_bccd_images(bccd_root, tmp_path):
    from mmengine.runner import Runner
    ann_file = str(tmp_path / 'train8.json')
    assert subset_annotations(bccd_root, ann_file, NUM_IMAGES) > 50

    cfg = Config.fromfile(CONFIG)
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.ann_file = ann_file
    # an infinite sampler: mmengine sleeps 2 s at every restart of a finite one, here every iteration
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    # fixed images: no random flip, so that every iteration sees the evaluation images
    cfg.train_dataloader.dataset.pipeline = [t for t in cfg.train_dataloader.dataset.pipeline
                                             if t['type'] != 'RandomFlip']
    cfg.val_evaluator.ann_file = ann_file
    cfg.test_evaluator.ann_file = ann_file
    cfg.train_cfg = ConfigDict(type='IterBasedTrainLoop', max_iters=MAX_ITERS)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # evaluated once, by runner.test()
    cfg.optim_wrapper.optimizer.lr = LR
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=MAX_ITERS, eta_min=0.05 * LR)
    ]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 * MAX_ITERS)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(tmp_path)

    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    elapsed = time.time() - start
    print(f'FCOS quick config, {NUM_IMAGES} BCCD train images, {MAX_ITERS} iterations: '
          f'bbox mAP@0.5 {metrics["coco/bbox_mAP_50"]:.3f}, mAP {metrics["coco/bbox_mAP"]:.3f} in {elapsed:.0f} s')
    assert metrics['coco/bbox_mAP_50'] >= 0.5, metrics
