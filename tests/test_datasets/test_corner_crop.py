"""CornerNetRandomCrop against CornerNet-Lite's ``random_crop`` (DETECTORS.md 2.9) with the same random draws."""
import numpy as np
import pytest
from mmdet.datasets.transforms import RandomCenterCropPad
from mmdet.structures.bbox import HorizontalBoxes

from mmkp.datasets.transforms import CornerNetRandomCrop
from mmkp.datasets.transforms.corner_crop import cornernet_border


def original_random_crop(image, detections, scales, view_size, border):
    """The original's crop as DETECTORS.md 2.9 describes it (draw scale, ctx, cty with np.random; zero canvas)."""
    view_h, view_w = view_size
    h, w = image.shape[:2]
    scale = np.random.choice(scales)
    ch, cw = int(view_h * scale), int(view_w * scale)
    out = np.zeros((ch, cw, 3), dtype=image.dtype)
    wb, hb = cornernet_border(border, w), cornernet_border(border, h)
    ctx, cty = np.random.randint(low=wb, high=w - wb), np.random.randint(low=hb, high=h - hb)
    x0, x1 = max(ctx - cw // 2, 0), min(ctx + cw // 2, w)
    y0, y1 = max(cty - ch // 2, 0), min(cty + ch // 2, h)
    lw, rw, th, bh = ctx - x0, x1 - ctx, cty - y0, y1 - cty
    out[ch // 2 - th:ch // 2 + bh, cw // 2 - lw:cw // 2 + rw] = image[y0:y1, x0:x1]
    det = detections.copy()
    det[:, 0:4:2] += cw // 2 - lw - x0
    det[:, 1:4:2] += ch // 2 - th - y0
    return out, det


@pytest.mark.parametrize('seed', range(6))
def test_same_crop_as_the_original(seed):
    rng = np.random.RandomState(100 + seed)
    h, w = rng.randint(150, 700, size=2)
    img = rng.randint(1, 255, size=(h, w, 3)).astype(np.uint8)
    xy = rng.rand(12, 2) * [w, h]
    wh = rng.rand(12, 2) * [w / 2, h / 2] + 2
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    labels = np.arange(12)
    np.random.seed(seed)
    ref_img, ref_det = original_random_crop(img, boxes, (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3), (511, 511), 128)
    np.random.seed(seed)
    out = CornerNetRandomCrop()(dict(img=img, gt_bboxes=HorizontalBoxes(boxes.copy()), gt_bboxes_labels=labels,
                                     gt_ignore_flags=np.zeros(12, dtype=bool)))
    assert np.array_equal(out['img'], ref_img) and out['img_shape'] == ref_img.shape[:2]
    # the original clips later (after resizing, to W - 1) and drops empty boxes: the same boxes survive here
    ch, cw = ref_img.shape[:2]
    clipped = ref_det.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, cw)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, ch)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    assert np.allclose(out['gt_bboxes'].numpy(), clipped[keep])
    assert np.array_equal(out['gt_bboxes_labels'], labels[keep]) and len(out['gt_ignore_flags']) == keep.sum()


def test_keeps_cut_boxes_whose_centre_is_outside_the_window():
    """mmdet's RandomCenterCropPad drops them (``_filter_boxes``); the original keeps their visible part."""
    img = np.ones((400, 400, 3), np.uint8)
    box = np.array([[0., 150., 130., 170.]], np.float32)  # centre x = 65
    crop = CornerNetRandomCrop(crop_size=(200, 200), ratios=(1.0, ), border=128)
    cases = 0
    for seed in range(60):
        np.random.seed(seed)
        np.random.choice((1.0, ))
        ctx = np.random.randint(low=128, high=400 - 128)  # the same draws as the transform
        cty = np.random.randint(low=128, high=400 - 128)
        np.random.seed(seed)
        out = crop(dict(img=img, gt_bboxes=HorizontalBoxes(box.copy()), gt_bboxes_labels=np.zeros(1)))
        if 65 <= ctx - 100 < 130 and cty - 100 < 170:  # the window cuts the box but misses its centre
            cases += 1
            assert len(out['gt_bboxes']) == 1
            assert out['gt_bboxes'].numpy()[0, 0] == 0 and out['gt_bboxes'].numpy()[0, 2] == 130 - (ctx - 100)
    assert cases > 5
    assert out['img'].shape == (200, 200, 3)


def test_border_rule_equals_mmdet():
    mmdet_crop = RandomCenterCropPad(
        crop_size=(511, 511), ratios=(1.0, ), border=128, mean=[0, 0, 0], std=[1, 1, 1], to_rgb=False,
        test_pad_mode=None)
    for size in list(range(1, 1100)):
        assert cornernet_border(128, size) == mmdet_crop._get_border(128, size), size


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='ratios'):
        CornerNetRandomCrop(ratios=())
    with pytest.raises(ValueError, match='crop_size'):
        CornerNetRandomCrop(crop_size=(0, 10))
    with pytest.raises(ValueError, match='image'):
        CornerNetRandomCrop()(dict(img=None))
