"""The quick CornerNet-Saccade config learns on real images, evaluated through the saccade test.

The protocol of ``tests/e2e/test_cornernet_learns.py`` (issue 10, item 7): the quick config is trained on 8 BCCD
train images and must then detect those images with bbox mAP@0.5 >= 0.5 (``CocoMetric`` on a json of the 8 images).
Model, targets, losses, decoding, soft-NMS and the test are the config's own: every image goes through
``CornerNetSaccade.predict`` with its ``test_cfg.saccade`` (the two downsized views, attention and coarse detections
-> locations, up to ``k_max`` zoomed crops, merge), never a full-image pass; the test checks that zoomed crops were
run. The training pipeline is reduced to what memorising 8 images needs, as in the other learning tests (resize and
flips instead of random crops): the two test views of each image (long side ``init_sizes`` = 192 / 255, zero padded
to the 255 crop), flipped with probability 0.5, no color jitter; the config's own pipeline, half object-centric
crops (``SaccadeObjectCrop``), memorises more slowly (mAP@0.5 0.555 after 300 epochs, seed 0;
configs/cornernet_saccade/README.md, "Memorisation experiments"). Adam with the learning rate below after a
20-iteration warm-up, divided by 10 for the last quarter of the epochs, batch 4, 2 threads. Seed 0 runs in the suite
(about 2.5 min on the idle 2-core machine); seeds 1-3 carry the ``slow`` marker
(``pytest -m slow tests/e2e/test_saccade_learns.py``). Numbers (per seed, with durations): that README.
"""
import os.path as osp
import time

import pytest
import torch
from mmengine.config import Config, ConfigDict

from tests.conftest import REPO
from tests.e2e.test_cornernet_learns import first_images_ann_file

CONFIG = 'configs/cornernet_saccade/cornernet-saccade_hourglass54-d3w32_1xb8-crop255-quick_bccd.py'
EPOCHS = 250
LR = 4e-3
NUM_IMAGES = 8
THREADS = 2


def memorisation_config(seed, bccd_root, work_dir):
    """The quick config on the first 8 BCCD train images: views for training, its own saccade test."""
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    ann_file = first_images_ann_file(bccd_root, work_dir, NUM_IMAGES)

    saccade = cfg.model.test_cfg.saccade
    crop = saccade.get('crop_size', 255)
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomChoiceResize', scales=[(s, s) for s in saccade.init_sizes], keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='Pad', size=(crop, crop), pad_val=dict(img=0)),
        dict(type='PackDetInputs')
    ]
    cfg.train_dataloader.dataset.pipeline = train_pipeline
    cfg.train_dataloader.batch_size = 4
    cfg.test_dataloader.batch_size = NUM_IMAGES  # the config's test pipeline: the original image, no resize
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.ann_file = ann_file
        loader.dataset.data_root = bccd_root + '/'
    cfg.test_evaluator = dict(cfg.val_evaluator, ann_file=ann_file)
    # no validation during training (the last epoch would run the saccade test twice)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.optim_wrapper.optimizer.lr = LR
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
        dict(type='MultiStepLR', by_epoch=True, begin=0, end=EPOCHS, milestones=[int(0.75 * EPOCHS)], gamma=0.1)
    ]
    cfg.train_cfg = ConfigDict(type='EpochBasedTrainLoop', max_epochs=EPOCHS)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=EPOCHS + 1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=seed)
    return cfg


@pytest.mark.e2e
@pytest.mark.parametrize('seed', [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow),
                                  pytest.param(3, marks=pytest.mark.slow)])
def test_quick_saccade_config_learns_eight_bccd_images(seed, bccd_root, tmp_path):
    from mmengine.runner import Runner
    cfg = memorisation_config(seed, bccd_root, tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        start = time.time()
        runner = Runner.from_cfg(cfg)
        runner.train()
        model = runner.model
        assert type(model).__name__ == 'CornerNetSaccade' and model.saccade_cfg['k_max'] > 0
        crops = []
        run_crops = model._run_crops

        def counting(batch, with_attention):  # the zoomed crops are the calls without attention
            if not with_attention:
                crops.append(len(batch))
            return run_crops(batch, with_attention)

        model._run_crops = counting
        metrics = runner.test()
        print(f'saccade seed {seed}: {EPOCHS} epochs of {NUM_IMAGES} images in {time.time() - start:.0f} s, '
              f'{sum(crops)} zoomed crops, {metrics}')
    finally:
        torch.set_num_threads(threads)
    assert sum(crops) > 0, 'the saccade test ran no zoomed crop'
    assert metrics['coco/bbox_mAP_50'] >= 0.5, metrics
