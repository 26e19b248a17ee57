"""Image formats through the real training pipelines (issue 12, item 1): grayscale JPEG / PNG, RGBA PNG, palette PNG,
16-bit PNG (grayscale and RGB), EXIF-rotated JPEG (orientations 6 and 3), a 4000x3000 JPEG and a 2x2 PNG.

Each image is written into ``tmp_path`` with a COCO file of our own, read by ``CheckedCocoDataset`` with a quick
config's train pipeline and passed to the config's data preprocessor. The pixels are compared with a decoding
written out independently of mmcv: the source array itself for the lossless PNGs (gray replicated to 3 channels,
alpha dropped, the palette looked up, 16 bit -> 8 bit as ``v >> 8``), PIL's ``convert('RGB')`` (after
``ImageOps.exif_transpose``) for the JPEGs; then the resize (mmcv's size rule: ``int(w * s + 0.5)``, bilinear),
the flip the pipeline drew and the normalisation written out. An EXIF orientation the annotation file disagrees with
stops with an error naming the file; the skip count of ``skip_bad_images`` is shared by the dataloader workers.
"""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from PIL import Image, ImageOps

import mmkp  # noqa: F401
from mmkp.registry import DATASETS, MODELS, TRANSFORMS
from tests.conftest import QUICK_CONFIGS, REPO

CLASSES = ('RBC', 'WBC', 'Platelets')


def _noise(h, w, c, seed, dtype=np.uint8, high=256):
    return np.random.default_rng(seed).integers(0, high, (h, w, c) if c else (h, w), dtype=dtype)


def _exif_jpeg(path, orientation, seed):
    """A 64 x 48 (w x h) colour JPEG with an EXIF orientation tag; the reference turns it as the tag says."""
    src = _noise(48, 64, 3, seed)
    src[:12, :16] = 255  # a white corner block, so that every turn changes the pixels
    im = Image.fromarray(src)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif)
    with Image.open(path) as f:
        stored = np.asarray(f.convert('RGB'))
        shown = np.asarray(ImageOps.exif_transpose(f).convert('RGB'))
    assert not np.array_equal(stored, shown) or stored.shape != shown.shape  # the tag makes a difference
    return shown


def _gray_jpeg(path):
    Image.fromarray(_noise(60, 80, 0, 1)).save(path, quality=95)
    with Image.open(path) as f:
        assert f.mode == 'L'
        return np.asarray(f.convert('RGB'))


def _gray_png(path):
    src = _noise(60, 80, 0, 2)
    Image.fromarray(src).save(path)
    return np.repeat(src[..., None], 3, 2)


def _rgba_png(path):
    src = _noise(60, 80, 4, 3)
    Image.fromarray(src, 'RGBA').save(path)
    with Image.open(path) as f:  # PIL's conversion agrees: RGB as stored, alpha dropped (no compositing)
        assert f.mode == 'RGBA' and np.array_equal(np.asarray(f.convert('RGB')), src[..., :3])
    return src[..., :3]


def _palette_png(path):
    im = Image.fromarray(_noise(60, 80, 3, 4)).quantize(colors=16)
    im.save(path, transparency=0)
    with Image.open(path) as f:
        assert f.mode == 'P'
        index = np.asarray(f)
        palette = np.asarray(f.getpalette(), dtype=np.uint8).reshape(-1, 3)
    return palette[index]  # the lookup written out


def _gray16_png(path):
    src = _noise(60, 80, 0, 5, np.uint16, 65536)
    assert cv2.imwrite(str(path), src)
    with Image.open(path) as f:
        assert f.mode == 'I;16'
        # PIL is no reference here: its RGB conversion clips 16-bit values to 255 instead of scaling them
        assert (np.asarray(f.convert('RGB')) == 255).mean() > 0.9
    return np.repeat((src >> 8).astype(np.uint8)[..., None], 3, 2)


def _rgb16_png(path):
    src = _noise(60, 80, 3, 6, np.uint16, 65536)  # BGR, as cv2 writes it
    assert cv2.imwrite(str(path), src)
    return (src[..., ::-1] >> 8).astype(np.uint8)


def _big_jpeg(path):
    y, x = np.mgrid[0:3000, 0:4000]
    src = np.stack([x * 255 // 3999, y * 255 // 2999, (x + y) % 256], -1).astype(np.uint8)
    src[::50] = 255
    Image.fromarray(src).save(path, quality=90)
    with Image.open(path) as f:
        assert f.size == (4000, 3000)
        return np.asarray(f.convert('RGB'))


def _tiny_png(path):
    src = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    Image.fromarray(src).save(path)
    return src


#: name -> (file name, writer(path) -> the RGB uint8 image (h, w, 3) in the frame the annotations use)
FORMATS = {
    'gray_jpeg': ('gray.jpg', _gray_jpeg),
    'gray_png': ('gray.png', _gray_png),
    'rgba_png': ('rgba.png', _rgba_png),
    'palette_png': ('palette.png', _palette_png),
    'gray16_png': ('gray16.png', _gray16_png),
    'rgb16_png': ('rgb16.png', _rgb16_png),
    'exif6_jpeg': ('exif6.jpg', lambda p: _exif_jpeg(p, 6, 7)),
    'exif3_jpeg': ('exif3.jpg', lambda p: _exif_jpeg(p, 3, 8)),
    'big_jpeg': ('big.jpg', _big_jpeg),
    'tiny_png': ('tiny.png', _tiny_png),
}


def _box(w, h):
    """One box per image, in the annotation (displayed) frame: the whole 2x2 image, else an off-centre box."""
    return [0.0, 0.0, float(w), float(h)] if w < 4 else [0.125 * w, 0.25 * h, 0.5 * w, 0.375 * h]


def write_folder(root, sizes=None):
    """Every format into ``root/img`` and ``root/ann.json`` (sizes from the reference unless ``sizes`` overrides a
    file's (w, h)); returns {name: reference RGB image}."""
    (root / 'img').mkdir(exist_ok=True)
    refs, images, anns = {}, [], []
    for i, (name, (file_name, writer)) in enumerate(FORMATS.items(), start=1):
        refs[name] = ref = writer(root / 'img' / file_name)
        h, w = ref.shape[:2]
        w, h = (sizes or {}).get(name, (w, h))
        images.append(dict(id=i, file_name=file_name, width=w, height=h))
        x, y, bw, bh = _box(w, h)
        anns.append(dict(id=i, image_id=i, category_id=1, bbox=[x, y, bw, bh], area=bw * bh, iscrowd=0))
    cats = [dict(id=k + 1, name=c) for k, c in enumerate(CLASSES)]
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return refs


def build_dataset(root, pipeline, **kwargs):
    init_default_scope('mmdet')
    return DATASETS.build(dict(type='CheckedCocoDataset', data_root=str(root) + '/', ann_file='ann.json',
                               data_prefix=dict(img='img/'), metainfo=dict(classes=CLASSES), pipeline=pipeline,
                               filter_cfg=dict(filter_empty_gt=False), **kwargs))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp('formats')
    return root, write_folder(root)


def _index(ds, name):
    names = [osp.basename(ds.get_data_info(i)['img_path']) for i in range(len(ds))]
    return names.index(FORMATS[name][0])


def _expected_input(ref_rgb, sample, scale=(320, 240)):
    """The resize (keep ratio into ``scale``), the flip of ``sample`` and BGR order written out: (3, h, w) uint8."""
    h, w = ref_rgb.shape[:2]
    s = min(max(scale) / max(h, w), min(scale) / min(h, w))
    size = int(w * s + 0.5), int(h * s + 0.5)
    img = cv2.resize(np.ascontiguousarray(ref_rgb[..., ::-1]), size, interpolation=cv2.INTER_LINEAR)
    meta = sample.metainfo
    if meta.get('flip'):
        direction = meta['flip_direction']
        if direction in ('horizontal', 'diagonal'):
            img = img[:, ::-1]
        if direction in ('vertical', 'diagonal'):
            img = img[::-1]
    return np.ascontiguousarray(img.transpose(2, 0, 1)), (size[0] / w, size[1] / h)


@pytest.mark.parametrize('name', list(FORMATS))
def test_centernet_train_pipeline_sees_the_pixels(folder, name):
    """CenterNet-R18 quick config: the packed image, its box and the preprocessor output equal the written-out
    decoding -> resize -> flip -> BGR->RGB -> normalise -> zero padding."""
    root, refs = folder
    cfg = Config.fromfile(osp.join(REPO, QUICK_CONFIGS['centernet']))
    ds = build_dataset(root, cfg.train_dataloader.dataset.pipeline)
    i = _index(ds, name)
    ref = refs[name]
    for _ in range(3):  # three draws of the random flip
        sample = ds[i]
        inputs, ds_sample = sample['inputs'], sample['data_samples']
        assert inputs.dtype == torch.uint8 and inputs.shape[0] == 3
        expected, (sx, sy) = _expected_input(ref, ds_sample)
        assert ds_sample.ori_shape == ref.shape[:2]
        assert torch.equal(inputs, torch.from_numpy(expected)), (name, (inputs.int() - torch.from_numpy(
            expected).int()).abs().max())
        # the box follows the pixels: the annotation's box, scaled and flipped like the image
        x, y, bw, bh = _box(ref.shape[1], ref.shape[0])
        box = np.array([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy])
        H, W = expected.shape[1:]
        direction = ds_sample.flip_direction if ds_sample.flip else None
        if direction in ('horizontal', 'diagonal'):
            box[[0, 2]] = W - box[[2, 0]]
        if direction in ('vertical', 'diagonal'):
            box[[1, 3]] = H - box[[3, 1]]
        got = ds_sample.gt_instances.bboxes
        np.testing.assert_allclose(getattr(got, 'tensor', got).numpy(), box[None], rtol=0, atol=1e-3)

        pre = MODELS.build(cfg.model.data_preprocessor)
        out = pre(pseudo_collate([sample]), True)['inputs']
        assert out.dtype == torch.float32 and out.shape[:2] == (1, 3)
        assert out.shape[2] % 32 == 0 and out.shape[3] % 32 == 0 and out.shape[2] >= H and out.shape[3] >= W
        mean = np.array(cfg.model.data_preprocessor.mean).reshape(3, 1, 1)
        std = np.array(cfg.model.data_preprocessor.std).reshape(3, 1, 1)
        normalised = (expected[::-1].astype(np.float64) - mean) / std  # BGR -> RGB, then ImageNet statistics
        np.testing.assert_allclose(out[0, :, :H, :W].numpy(), normalised, rtol=0, atol=1e-4)
        assert not out[0, :, H:].any() and not out[0, :, :, W:].any()


@pytest.mark.parametrize('config', [c for c in QUICK_CONFIGS if c != 'centernet'])
def test_other_quick_pipelines_load_the_pixels(folder, config):
    """FCOS, CornerNet, CornerNet-Squeeze, the keypoint-triplet CenterNet, CornerNet-Saccade: every format's 3-channel
    uint8 image before the geometric transforms equals the written-out decoding, and the preprocessor input is a
    finite 3 x H x W float batch."""
    root, refs = folder
    cfg = Config.fromfile(osp.join(REPO, QUICK_CONFIGS[config]))
    ds = build_dataset(root, cfg.train_dataloader.dataset.pipeline)
    pre = MODELS.build(cfg.model.data_preprocessor)
    load = ds.pipeline.transforms[0]
    assert type(load).__name__ == 'LoadImageFromFile'
    for name, ref in refs.items():
        i = _index(ds, name)
        img = load(ds.get_data_info(i))['img']
        assert img.dtype == np.uint8 and img.shape == ref.shape, (config, name, img.shape)
        assert np.array_equal(img[..., ::-1], ref), (config, name)
        out = pre(pseudo_collate([ds[i]]), True)['inputs']
        assert out.dtype == torch.float32 and out.shape[:2] == (1, 3) and out.dim() == 4, (config, name)
        assert torch.isfinite(out).all() and out.std() > 0, (config, name)


def training_step_on_every_format(root, config):
    """All ten images in one batch through the quick config's train pipeline, data preprocessor and model (seed 0):
    the loss terms (each a tensor, lists summed) and the gradients of the parameters that received one."""
    torch.manual_seed(0)
    np.random.seed(0)  # the random transforms (flips, crops, RandomChoice) draw from numpy
    cfg = Config.fromfile(osp.join(REPO, QUICK_CONFIGS[config]))
    ds = build_dataset(root, cfg.train_dataloader.dataset.pipeline)
    model = MODELS.build(cfg.model)
    model.train()
    batch = model.data_preprocessor(pseudo_collate([ds[i] for i in range(len(ds))]), True)
    assert batch['inputs'].shape[:2] == (len(FORMATS), 3)
    assert [osp.basename(s.img_path) for s in batch['data_samples']] == [f for f, _ in FORMATS.values()]
    losses = model(**batch, mode='loss')
    terms = {k: v if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if 'loss' in k}
    sum(terms.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return batch, terms, grads


@pytest.mark.parametrize('config', list(QUICK_CONFIGS))
def test_one_training_step_on_every_format(folder, config):
    """All ten images in one batch through every quick config's model (CenterNet-R18, FCOS-R18, CornerNet,
    CornerNet-Squeeze, the keypoint-triplet CenterNet, CornerNet-Saccade): finite losses and gradients."""
    root, _ = folder
    batch, terms, grads = training_step_on_every_format(root, config)
    boxes = [len(s.gt_instances) for s in batch['data_samples']]
    if config in ('centernet', 'fcos'):  # resize and flip: every image keeps its box
        assert boxes == [1] * len(FORMATS), boxes
    else:  # the random crops of the corner family may cut a box off
        assert all(n <= 1 for n in boxes) and sum(boxes) >= len(FORMATS) // 2, boxes
    assert terms and all(v.dim() == 0 and torch.isfinite(v) for v in terms.values()), terms
    assert any(v > 0 for v in terms.values()), terms
    assert grads and all(torch.isfinite(g).all() for g in grads.values()), [n for n, g in grads.items()
                                                                             if not torch.isfinite(g).all()]
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_exif_turn_the_annotation_file_disagrees_with_names_the_file(tmp_path):
    """Orientation 6 with the file's width / height in the stored frame: an error naming the file, the sizes, the
    orientation and the way out, in training (also with skip_bad_images) and test mode; the way out
    (``color_ignore_orientation``) then loads the stored frame."""
    write_folder(tmp_path, sizes={'exif6_jpeg': (64, 48)})  # stored 64 wide x 48 high; decoded 48 x 64
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs')]
    for kwargs in (dict(), dict(skip_bad_images=True), dict(test_mode=True)):
        ds = build_dataset(tmp_path, pipeline, **kwargs)
        i = _index(ds, 'exif6_jpeg')
        with pytest.raises(ValueError) as info:
            ds[i]
        msg = str(info.value)
        assert str(tmp_path / 'img' / 'exif6.jpg') in msg and '64 x 48' in msg and '48 x 64' in msg, msg
        assert 'EXIF orientation 6' in msg and 'color_ignore_orientation' in msg and f'image id {i + 1}' in msg
        assert ds[_index(ds, 'exif3_jpeg')]['inputs'].shape[1:] == (48, 64)  # the other images still load
    pipeline[0] = dict(type='LoadImageFromFile', color_type='color_ignore_orientation')
    ds = build_dataset(tmp_path, pipeline)
    sample = ds[_index(ds, 'exif6_jpeg')]
    with Image.open(tmp_path / 'img' / 'exif6.jpg') as f:
        stored = np.asarray(f.convert('RGB'))  # PIL without exif_transpose: the stored frame
    assert torch.equal(sample['inputs'], torch.from_numpy(np.ascontiguousarray(stored[..., ::-1].transpose(2, 0, 1))))


def test_any_size_mismatch_names_the_file(tmp_path):
    """A width / height the image does not have (no EXIF tag) is an error too, naming file, image id and sizes."""
    write_folder(tmp_path, sizes={'gray_png': (81, 60)})
    ds = build_dataset(tmp_path, [dict(type='LoadImageFromFile'), dict(type='PackDetInputs')], test_mode=True)
    i = _index(ds, 'gray_png')
    with pytest.raises(ValueError, match=r'gray\.png: the image decodes to height x width 60 x 80 but .*ann\.json '
                       rf'gives 60 x 81 for image id {i + 1}'):
        ds[i]


def test_loader_is_mmcv_color_decoding():
    """The loading transform the quick configs use decodes 3-channel 8-bit (``color_type='color'``): the premise
    of the pixel tests above (a config switching to 'unchanged' would hand 16-bit / 1- / 4-channel arrays on)."""
    init_default_scope('mmdet')
    load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    assert load.color_type == 'color' and load.to_float32 is False


def test_skip_count_is_shared_by_the_dataloader_workers(tmp_path):
    """skip_bad_images with 2 dataloader workers: the epoch's count (all workers) is reported and reset by
    ``report_skipped_images``; the main process itself skipped nothing."""
    from torch.utils.data import DataLoader
    (tmp_path / 'img').mkdir()
    _tiny_png(tmp_path / 'img' / 'good.png')
    (tmp_path / 'img' / 'empty.png').write_bytes(b'')
    (tmp_path / 'img' / 'text.png').write_bytes(b'not an image\n')
    names = ['good.png', 'empty.png', 'text.png', 'empty.png']
    images = [dict(id=i + 1, file_name=n, width=2, height=2) for i, n in enumerate(names)]
    anns = [dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[0, 0, 2, 2], area=4, iscrowd=0)
            for i in range(len(names))]
    with open(tmp_path / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=[dict(id=1, name='RBC')]), f)
    init_default_scope('mmdet')
    ds = DATASETS.build(dict(type='CheckedCocoDataset', data_root=str(tmp_path) + '/', ann_file='ann.json',
                             data_prefix=dict(img='img/'), metainfo=dict(classes=('RBC', )), skip_bad_images=True,
                             pipeline=[dict(type='LoadImageFromFile'), dict(type='PackDetInputs')],
                             filter_cfg=dict(filter_empty_gt=False)))
    ds._rand_another = lambda: 0  # the refetch takes the good image: exactly one skip per bad index
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=pseudo_collate)
    for epoch, total in ((1, 3), (2, 6)):
        got = [osp.basename(b['data_samples'][0].img_path) for b in loader]
        assert got == ['good.png'] * 4
        assert ds.skipped_images == []  # the skips happened in the workers
        assert ds.report_skipped_images(epoch) == (3, total)
        assert ds.report_skipped_images(epoch) == (0, total)
