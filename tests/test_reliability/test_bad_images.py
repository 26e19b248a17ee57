"""Unreadable images through the real dataset (``CheckedCocoDataset``) and pipeline: an error naming the file, or,
with ``skip_bad_images`` in training, a logged skip and another image; test mode never skips (issue 12, item 1)."""
import json
import logging
import os.path as osp
import shutil

import pytest
from mmdet.utils import register_all_modules
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

import mmkp  # noqa: F401
from mmkp.registry import DATASETS

register_all_modules(init_default_scope=False)
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(320, 240), keep_ratio=True), dict(type='PackDetInputs')]
BAD = {'empty.jpg': b'', 'text.jpg': b'not an image at all\n', 'truncated.jpg': None}


@pytest.fixture()
def folder(tmp_path, bccd_root):
    """A COCO folder: one real BCCD image (good.jpg) and three bad ones, each with the good image's boxes."""
    with open(osp.join(bccd_root, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    image = coco['images'][0]
    (tmp_path / 'img').mkdir()
    src = osp.join(bccd_root, 'images', image['file_name'])
    shutil.copy(src, tmp_path / 'img' / 'good.jpg')
    with open(src, 'rb') as f:
        data = f.read()
    for name, content in BAD.items():
        (tmp_path / 'img' / name).write_bytes(data[:len(data) // 3] if content is None else content)
    names = ['good.jpg', *BAD]
    images = [dict(image, id=i + 1, file_name=n) for i, n in enumerate(names)]
    boxes = [a for a in coco['annotations'] if a['image_id'] == image['id']]
    anns = [dict(a, id=k * 1000 + j + 1, image_id=k + 1) for k in range(len(names)) for j, a in enumerate(boxes)]
    with open(tmp_path / 'ann.json', 'w') as f:
        json.dump(dict(coco, images=images, annotations=anns), f)
    return tmp_path


def build(folder, **kwargs):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(dict(type='CheckedCocoDataset', data_root=str(folder) + '/', ann_file='ann.json',
                                   data_prefix=dict(img='img/'), metainfo=dict(classes=('RBC', 'WBC', 'Platelets')),
                                   pipeline=PIPELINE, filter_cfg=dict(filter_empty_gt=False), **kwargs))


@pytest.mark.parametrize('test_mode', [False, True])
def test_bad_images_stop_naming_the_file(folder, test_mode):
    ds = build(folder, test_mode=test_mode)
    assert [osp.basename(ds.get_data_info(i)['img_path']) for i in range(len(ds))] == ['good.jpg', *BAD]
    assert ds[0]['inputs'].shape[0] == 3
    for i, name in enumerate(BAD, start=1):
        with pytest.raises(Exception) as info:
            ds[i]
        assert str(folder / 'img' / name) in str(info.value), (name, info.value)


def test_skip_bad_images_in_training_logs_and_takes_another(folder):
    ds = build(folder, skip_bad_images=True)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    for i, name in enumerate(BAD, start=1):
        sample = ds[i]  # mmdet's __getitem__ refetches another index when prepare_data returns None
        assert osp.basename(sample['data_samples'].img_path) == 'good.jpg'
        assert str(folder / 'img' / name) in ds.skipped_images  # (the refetch may hit another bad one first)
    assert len(ds.skipped_images) >= 3 and set(ds.skipped_images) == {str(folder / 'img' / n) for n in BAD}
    logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    for name in BAD:
        assert any(f'skipped {folder / "img" / name}' in m and 'image(s) skipped so far' in m for m in messages)


def test_test_mode_never_skips(folder):
    ds = build(folder, skip_bad_images=True, test_mode=True)
    with pytest.raises(Exception, match='empty.jpg'):
        ds[1]


def test_skipped_images_hook_logs_the_epoch_count_through_wrappers(folder):
    from types import SimpleNamespace

    from mmkp.engine import SkippedImagesHook
    ds = build(folder, skip_bad_images=True)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        for i in range(1, len(BAD) + 1):
            ds[i]
        skipped = len(ds.skipped_images)  # >= len(BAD): a refetch may hit another bad image first
        wrapper = SimpleNamespace(dataset=SimpleNamespace(datasets=[ds]))  # e.g. RepeatDataset(ConcatDataset)
        runner = SimpleNamespace(train_dataloader=SimpleNamespace(dataset=wrapper), epoch=3)
        SkippedImagesHook().after_train_epoch(runner)
        SkippedImagesHook().after_train_epoch(runner)  # the count was reset: no second message
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records if 'unreadable image(s) skipped in epoch' in r.getMessage()]
    assert messages == [f'CheckedCocoDataset: {ds.ann_file}: {skipped} unreadable image(s) skipped in epoch 3 '
                        f'(all dataloader workers; {skipped} in total)'], messages
    assert ds.report_skipped_images() == (0, skipped)
