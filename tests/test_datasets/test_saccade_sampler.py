"""CornerNet-Saccade's object-centric crop (princeton-vl/CornerNet-Lite@6a54505
``core/sample/cornernet_saccade.py``)."""
import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes

from mmkp.datasets.transforms import SaccadeObjectCrop
from mmkp.datasets.transforms.saccade_sampler import reference_scale
from mmkp.registry import TRANSFORMS


def _results(boxes, labels=None, size=(480, 640), ignore=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    img = np.random.RandomState(0).randint(1, 255, (*size, 3)).astype(np.uint8)  # no zeros: padding is visible
    return dict(img=img, img_shape=size, gt_bboxes=HorizontalBoxes(boxes),
                gt_bboxes_labels=np.arange(len(boxes)) if labels is None else np.asarray(labels),
                gt_ignore_flags=np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore))


@pytest.mark.parametrize('seed', range(20))
def test_keeps_the_reference_object_and_its_box(seed):
    boxes = [[100, 80, 180, 150], [300, 200, 340, 230], [500, 400, 520, 470]]
    results = _results(boxes)
    np.random.seed(seed)
    # replay the draws to know the reference and its scale (the original's order: randint(n), then randint(lo, hi))
    state = np.random.get_state()
    ref = np.random.randint(3)
    box = np.asarray(boxes[ref], np.float32)
    scale = reference_scale(max(box[3] - box[1], box[2] - box[0]))
    np.random.set_state(state)
    out = SaccadeObjectCrop(flip_prob=0.0)(results)
    assert out['img'].shape == (255, 255, 3) and out['img_shape'] == (255, 255)
    assert out['saccade_scale'] == pytest.approx(scale)
    index = out['saccade_ref_index']
    assert index >= 0 and out['gt_bboxes_labels'][index] == ref
    got = out['gt_bboxes'].numpy()[index]
    # its long side lies in its bucket (here: 32 < m <= 96 -> [32, 96]) and its box is the rescaled box, shifted
    long_side = max(got[2] - got[0], got[3] - got[1])
    assert 32 <= long_side <= 96 + 1e-3 or 16 <= long_side <= 32 + 1e-3
    # the window (254 pixels, its start drawn from [int(x2 - 255), ...]) may cut the reference by up to 2 pixels
    size, expect = got[2:] - got[:2], (box[2:] - box[:2]) * scale
    assert np.all(size <= expect + 1e-3) and np.all(size >= expect - 2)
    # the pixels under the box are the rescaled image's (not padding)
    x1, y1, x2, y2 = got.astype(int)
    assert (out['img'][y1:y2, x1:x2] > 0).all()


def test_shift_and_clipping_by_hand():
    # a 200 x 100 image (smaller than the crop): centred; scale of the only box fixed by the draws
    np.random.seed(3)
    results = _results([[10, 20, 42, 52]], size=(100, 200))
    state = np.random.get_state()
    np.random.randint(1)
    scale = reference_scale(32.0)  # 32 is not > 32: randint(16, 33) / 32 <= 1, the image stays under 255
    np.random.set_state(state)
    out = SaccadeObjectCrop(flip_prob=0.0)(results)
    w, h = int(200 * scale), int(100 * scale)
    # centre of the window = image centre; canvas centre 127; image pixel x -> x - (w // 2 - 127)
    off_x, off_y = w // 2 - 127, h // 2 - 127
    expect = np.array([10 * scale - off_x, 20 * scale - off_y, 42 * scale - off_x, 52 * scale - off_y])
    np.testing.assert_allclose(out['gt_bboxes'].numpy()[0], expect, rtol=1e-5)
    assert (out['img'][:max(0, -off_y)] == 0).all()  # zero padding above the image


def test_flip_maps_x_to_w_minus_x_minus_1():
    boxes = [[100, 80, 180, 150]]
    np.random.seed(5)
    plain = SaccadeObjectCrop(flip_prob=0.0)(_results(boxes))['gt_bboxes'].numpy()[0]
    np.random.seed(5)
    flipped = SaccadeObjectCrop(flip_prob=1.0)(_results(boxes))
    got = flipped['gt_bboxes'].numpy()[0]
    assert flipped['flip'] and flipped['flip_direction'] == 'horizontal'
    np.testing.assert_allclose(got, [255 - plain[2] - 1, plain[1], 255 - plain[0] - 1, plain[3]], rtol=1e-6)
    np.random.seed(5)
    mm = SaccadeObjectCrop(flip_prob=1.0, flip_mode='mmdet')(_results(boxes))['gt_bboxes'].numpy()[0]
    np.testing.assert_allclose(mm, got + [1, 0, 1, 0], rtol=1e-6)


def test_small_and_cut_objects_are_ignored():
    """Per box, by hand: ignored iff max(int h, int w) < 16 or visible area <= 0.5 of the rescaled box."""
    boxes = np.array([[300, 200, 340, 260], [320, 270, 322, 272], [0, 0, 640, 480], [600, 10, 700, 60]], np.float32)
    seen = set()
    for seed in range(30):
        np.random.seed(seed)
        out = SaccadeObjectCrop(flip_prob=0.0)(_results(boxes))
        scale = out['saccade_scale']
        b = out['gt_bboxes'].numpy()
        for row, label in enumerate(out['gt_bboxes_labels']):
            full = boxes[label].copy()
            area_full = (full[2] - full[0]) * (full[3] - full[1]) * scale ** 2  # before any clipping
            area = (b[row, 2] - b[row, 0]) * (b[row, 3] - b[row, 1])
            long_side = max(int(b[row, 3]) - int(b[row, 1]), int(b[row, 2]) - int(b[row, 0]))
            expect = long_side < 16 or area / area_full <= 0.5
            assert out['gt_ignore_flags'][row] == expect, (seed, label)
            seen.add((int(label), bool(expect)))
    assert (2, True) in seen and (0, False) in seen and (1, True) in seen  # the rule fired both ways


def test_crowd_flags_are_kept_and_rand_crop_draws_no_reference():
    np.random.seed(0)
    out = SaccadeObjectCrop(flip_prob=0.0)(_results([[100, 80, 180, 150]], ignore=[True]))
    assert out['gt_ignore_flags'].tolist() == [True]
    refs = []
    for seed in range(40):
        np.random.seed(seed)
        refs.append(SaccadeObjectCrop(rand_crop=True)(_results([[100, 80, 180, 150]]))['saccade_ref_index'])
    assert -1 in refs and 0 in refs


def test_registered_and_bad_arguments():
    assert isinstance(TRANSFORMS.build(dict(type='SaccadeObjectCrop')), SaccadeObjectCrop)
    with pytest.raises(ValueError, match='flip_mode'):
        SaccadeObjectCrop(flip_mode='vertical')
    with pytest.raises(ValueError, match='image'):
        SaccadeObjectCrop()(dict(img=None))
