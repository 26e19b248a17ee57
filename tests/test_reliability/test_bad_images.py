"""Unreadable images through the real dataset (``CheckedCocoDataset``) and pipeline: an error naming the file, or,
with ``skip_bad_images`` in training, a logged skip and another image; test mode never skips (issue 12, item 1).
Zero-byte, not-an-image and truncated files with a plain pipeline; a missing file with the quick configs' train and
test pipelines."""
import contextlib
import json
import logging
import os.path as osp
import shutil

import pytest
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

import mmkp  # noqa: F401
from mmkp.registry import DATASETS
from tests.conftest import QUICK_CONFIGS, REPO

register_all_modules(init_default_scope=False)
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(320, 240), keep_ratio=True), dict(type='PackDetInputs')]
BAD = {'empty.jpg': b'', 'text.jpg': b'not an image at all\n', 'truncated.jpg': None}


@contextlib.contextmanager
def logged_messages():
    """Collect the messages logged through mmengine's current logger inside the ``with`` block (yields the list)."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def coco_folder(tmp_path, bccd_root, names, bad=None):
    """A COCO folder ``tmp_path``: ``img/good.jpg`` (the first BCCD train image), ``img/<name>`` with the bytes of
    ``bad[name]`` (None: the good image's first third) for each name of ``bad``, and ``ann.json`` listing ``names``
    (ids 1, 2, ...), each with the good image's size and boxes."""
    with open(osp.join(bccd_root, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    image = coco['images'][0]
    (tmp_path / 'img').mkdir()
    src = osp.join(bccd_root, 'images', image['file_name'])
    shutil.copy(src, tmp_path / 'img' / 'good.jpg')
    with open(src, 'rb') as f:
        data = f.read()
    for name, content in (bad or {}).items():
        (tmp_path / 'img' / name).write_bytes(data[:len(data) // 3] if content is None else content)
    images = [dict(image, id=i + 1, file_name=n) for i, n in enumerate(names)]
    boxes = [a for a in coco['annotations'] if a['image_id'] == image['id']]
    anns = [dict(a, id=k * 1000 + j + 1, image_id=k + 1) for k in range(len(names)) for j, a in enumerate(boxes)]
    with open(tmp_path / 'ann.json', 'w') as f:
        json.dump(dict(coco, images=images, annotations=anns), f)
    return tmp_path


@pytest.fixture()
def folder(tmp_path, bccd_root):
    """A COCO folder: one real BCCD image (good.jpg) and three bad ones, each with the good image's boxes."""
    return coco_folder(tmp_path, bccd_root, ['good.jpg', *BAD], BAD)


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
    with logged_messages() as messages:
        for i, name in enumerate(BAD, start=1):
            sample = ds[i]  # mmdet's __getitem__ refetches another index when prepare_data returns None
            assert osp.basename(sample['data_samples'].img_path) == 'good.jpg'
            assert str(folder / 'img' / name) in ds.skipped_images  # (the refetch may hit another bad one first)
    assert len(ds.skipped_images) >= 3 and set(ds.skipped_images) == {str(folder / 'img' / n) for n in BAD}
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
    with logged_messages() as logged:
        for i in range(1, len(BAD) + 1):
            ds[i]
        skipped = len(ds.skipped_images)  # >= len(BAD): a refetch may hit another bad image first
        wrapper = SimpleNamespace(dataset=SimpleNamespace(datasets=[ds]))  # e.g. RepeatDataset(ConcatDataset)
        runner = SimpleNamespace(train_dataloader=SimpleNamespace(dataset=wrapper), epoch=3)
        SkippedImagesHook().after_train_epoch(runner)
        SkippedImagesHook().after_train_epoch(runner)  # the count was reset: no second message
    messages = [m for m in logged if 'unreadable image(s) skipped in epoch' in m]
    assert messages == [f'CheckedCocoDataset: {ds.ann_file}: {skipped} unreadable image(s) skipped in epoch 3 '
                        f'(all dataloader workers; {skipped} in total)'], messages
    assert ds.report_skipped_images() == (0, skipped)


@pytest.fixture()
def missing_folder(tmp_path, bccd_root):
    """A COCO folder of two BCCD images with their boxes: good.jpg on disk, missing.jpg listed but absent."""
    return coco_folder(tmp_path, bccd_root, ['good.jpg', 'missing.jpg'])


def build_quick(folder, config, test_mode, **kwargs):
    """``CheckedCocoDataset`` over ``folder`` with the train (or test) pipeline of a quick config."""
    cfg = Config.fromfile(osp.join(REPO, QUICK_CONFIGS[config]))
    loader = cfg.val_dataloader if test_mode else cfg.train_dataloader
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(dict(type='CheckedCocoDataset', data_root=str(folder) + '/', ann_file='ann.json',
                                   data_prefix=dict(img='img/'), metainfo=dict(classes=('RBC', 'WBC', 'Platelets')),
                                   pipeline=loader.dataset.pipeline, filter_cfg=dict(filter_empty_gt=False),
                                   test_mode=test_mode, **kwargs))


@pytest.mark.parametrize('config', list(QUICK_CONFIGS))
def test_missing_image_stops_naming_the_file(missing_folder, config):
    """A listed image that is not on disk: ``FileNotFoundError`` naming its path, from each quick config's train
    and test pipeline, and in test mode also with ``skip_bad_images=True`` (a val / test image is never skipped).
    The image beside it loads."""
    path = str(missing_folder / 'img' / 'missing.jpg')
    for test_mode, kwargs in ((False, {}), (True, {}), (True, dict(skip_bad_images=True))):
        ds = build_quick(missing_folder, config, test_mode, **kwargs)
        assert ds.get_data_info(1)['img_path'] == path
        assert ds[0]['inputs'].shape[0] == 3
        with pytest.raises(FileNotFoundError) as info:
            ds[1]
        assert path in str(info.value), (config, test_mode, kwargs, info.value)
        assert ds.skipped_images == []


def test_missing_image_is_skipped_in_training_like_the_other_unreadable_ones(missing_folder):
    """``skip_bad_images=True`` in training: the missing file is skipped, logged and counted like a zero-byte or
    truncated one, and another image is taken; when no image can be read, mmengine's refetch limit stops the run."""
    ds = build_quick(missing_folder, 'centernet', False, skip_bad_images=True, max_refetch=5)
    with logged_messages() as messages:
        sample = ds[1]
    path = str(missing_folder / 'img' / 'missing.jpg')
    assert osp.basename(sample['data_samples'].img_path) == 'good.jpg'
    assert ds.skipped_images and set(ds.skipped_images) == {path}
    assert any(f'skipped {path} (FileNotFoundError: ' in m and 'image(s) skipped so far' in m for m in messages)
    assert ds.report_skipped_images(epoch=1)[0] == len(ds.skipped_images)
    (missing_folder / 'img' / 'good.jpg').unlink()  # now no image can be read
    with pytest.raises(Exception, match='Cannot find valid image after 5'):
        ds[0]
    assert len(ds.skipped_images) >= 6 and set(ds.skipped_images) == {path, str(missing_folder / 'img' / 'good.jpg')}
