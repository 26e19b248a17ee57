"""CenterNet-R18 learns on real images: it overfits 8 BCCD train images (targets, losses and decoding end to end)."""
import json

import pytest
from mmengine.config import Config

CONFIG = 'configs/centernet/centernet_r18_1xb8-quick_bccd.py'


def subset_annotations(ann_file, num_images, out_file):
    """A COCO json holding the first ``num_images`` images of ``ann_file`` and their boxes (the evaluator must see
    exactly the evaluated images: with the full json the other images would count as missed)."""
    with open(ann_file) as f:
        coco = json.load(f)
    images = coco['images'][:num_images]
    ids = {img['id'] for img in images}
    coco['images'] = images
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in ids]
    with open(out_file, 'w') as f:
        json.dump(coco, f)
    return str(out_file)


@pytest.mark.e2e
def test_centernet_overfits_8_bccd_images(tmp_path, bccd_root):
    from mmengine.runner import Runner
    cfg = Config.fromfile(CONFIG)
    train_ann = subset_annotations(f'{bccd_root}/annotations/instances_train.json', 8, tmp_path / 'train8.json')
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.batch_size = 8
        loader.dataset.ann_file = train_ann
    cfg.train_dataloader.dataset.pipeline = cfg.test_dataloader.dataset.pipeline[:1] + [
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(256, 192), keep_ratio=True),
        dict(type='PackDetInputs')
    ]
    for split in ('val', 'test'):
        cfg.get(f'{split}_evaluator').ann_file = train_ann
    # 80 single-batch epochs: at 40, seeds 0-3 reached mAP@0.5 0.23 / 0.66 / 0.73 / 0.44 (too close to the bar to
    # be a test); at 80 all four reached 1.0 (mAP 0.76-0.81), about 80 s on 2 cores.
    epochs = 80
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    for split in ('val', 'test'):
        cfg.get(f'{split}_dataloader').dataset.pipeline[1] = dict(type='Resize', scale=(256, 192), keep_ratio=True)
    cfg.optim_wrapper.optimizer.lr = 2e-3
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert metrics['coco/bbox_mAP_50'] >= 0.5, metrics
    assert metrics['coco/bbox_mAP'] >= 0.5, metrics
