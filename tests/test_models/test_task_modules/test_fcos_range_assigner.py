"""FCOSRangeAssigner on hand-built cases: strict inside test, inclusive ranges, smallest area, ties, center sampling."""
import math

import pytest
import torch
from mmdet.models.task_modules.prior_generators import MlvlPointGenerator
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

from mmkp.models.task_modules import FCOSRangeAssigner, centerness_target
from mmkp.registry import TASK_UTILS

# two levels: stride 8 on an 8x8 map (points 4, 12, ..., 60), stride 16 on a 4x4 map (points 8, 24, 40, 56)
SIZES, STRIDES = [(8, 8), (4, 4)], [8, 16]
RANGES = ((-1, 32), (32, 1e8))


def gt(boxes, labels):
    return InstanceData(bboxes=torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.as_tensor(labels, dtype=torch.long))


def assign(assigner, gts, sizes, strides, num_classes, offset=0.5):
    """``assigner.assign`` on the points the head gives it: mmdet's ``MlvlPointGenerator`` with ``offset``."""
    points = MlvlPointGenerator(strides, offset=offset).grid_priors(sizes, device='cpu')
    return assigner.assign(gts, points, sizes, strides, num_classes)


def index(level, x, y):
    """Flat index of the point at pixel (x, y) of ``level`` in the assigner's (level, row-major) order."""
    (h0, w0), stride = SIZES[0], STRIDES[level]
    i, j = int(x // stride), int(y // stride)
    if level == 0:
        return j * w0 + i
    return h0 * w0 + j * SIZES[1][1] + i


def test_registered_and_repr():
    assigner = TASK_UTILS.build(dict(type='FCOSRangeAssigner', center_sampling=True))
    assert isinstance(assigner, FCOSRangeAssigner)
    assert assigner.regress_ranges == ((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8))
    assert 'center_sampling=True' in repr(assigner) and 'offset' not in repr(assigner)


def test_inside_is_strict_and_ranges_are_inclusive():
    # box [4, 4, 40, 40]: level-0 points at x = 4 and level-1 points at x = 40 lie on its edges
    t = assign(FCOSRangeAssigner(regress_ranges=RANGES), [gt([[4, 4, 40, 40]], [1])], SIZES, STRIDES, num_classes=3)
    labels, targets = t.labels[0], t.bbox_targets[0]
    assert t.num_points_per_level == [64, 16] and labels.shape == (80, )
    assert labels[index(0, 4, 4)] == 3 and labels[index(0, 4, 12)] == 3  # l = 0: on the edge, background
    assert labels[index(1, 40, 8)] == 3  # l = 36 but r = 0
    # level 0, (36, 36): l = t = 32 = hi of level 0 (inclusive)
    assert labels[index(0, 36, 36)] == 1
    assert targets[index(0, 36, 36)].tolist() == [32, 32, 4, 4]
    # level 1, (8, 8): r = b = 32 = lo of level 1 (inclusive)
    assert labels[index(1, 8, 8)] == 1
    assert targets[index(1, 8, 8)].tolist() == [4, 4, 32, 32]
    # level 1, (24, 24): max distance 20 < 32, too small for level 1
    assert labels[index(1, 24, 24)] == 3
    # level 0: the inside points are x, y in {12, 20, 28, 36}, all with max distance <= 32;
    # level 1: inside x, y in {8, 24}; all but (24, 24) reach 32
    assert int((labels[:64] == 1).sum()) == 16 and int((labels[64:] == 1).sum()) == 3
    # center-ness at (12, 12): l = t = 8, r = b = 28
    assert math.isclose(float(t.centerness_targets[0, index(0, 12, 12)]), 8 / 28, rel_tol=1e-6)
    assert (t.gt_inds[0] == torch.where(labels == 1, 0, -1)).all()
    bg = labels == 3
    assert (targets[bg] == 0).all() and (t.centerness_targets[0][bg] == 0).all()


def test_smallest_area_wins_and_equal_areas_take_the_first_box():
    one_level = dict(regress_ranges=((-1, 1e8), ))
    assigner = FCOSRangeAssigner(**one_level)
    t = assign(assigner, [gt([[0, 0, 64, 64], [8, 8, 40, 40]], [0, 2])], [(8, 8)], [8], num_classes=3)
    labels = t.labels[0].view(8, 8)
    assert labels[2, 2] == 2 and t.gt_inds[0].view(8, 8)[2, 2] == 1  # (20, 20): inside both, the smaller
    assert labels[0, 0] == 0 and labels[7, 7] == 0  # inside the big box only
    assert t.bbox_targets[0].view(8, 8, 4)[2, 2].tolist() == [12, 12, 20, 20]
    # X = [0, 0, 32, 16] and Y = [8, 0, 24, 32] have the same area 512 and both hold (12, 4)
    x_box, y_box = [0, 0, 32, 16], [8, 0, 24, 32]
    t = assign(assigner, [gt([x_box, y_box], [1, 2]), gt([y_box, x_box], [2, 1])], [(8, 8)], [8], num_classes=3)
    assert t.labels[0, 1] == 1 and t.gt_inds[0, 1] == 0  # point (12, 4): the first listed box
    assert t.labels[1, 1] == 2 and t.gt_inds[1, 1] == 0
    assert t.bbox_targets[0, 1].tolist() == [12, 4, 20, 12]
    assert t.bbox_targets[1, 1].tolist() == [4, 4, 12, 28]


def test_center_sampling_region_is_strict_and_clipped_to_the_box():
    assigner = FCOSRangeAssigner(regress_ranges=((-1, 1e8), ), center_sampling=True, center_sample_radius=1.5)
    # centre 32, sub-box [20, 44]: points 20 and 44 on its edges are out, 28 and 36 in
    t = assign(assigner, [gt([[0, 0, 64, 64]], [0])], [(8, 8)], [8], num_classes=1)
    pos = (t.labels[0] == 0).view(8, 8).nonzero().tolist()
    assert pos == [[3, 3], [3, 4], [4, 3], [4, 4]]
    # narrow box [0, 0, 16, 64]: x sub-box [-4, 20] clipped to [0, 16] -> x in {4, 12}; y in {28, 36}
    t = assign(assigner, [gt([[0, 0, 16, 64]], [0])], [(8, 8)], [8], num_classes=1)
    pos = (t.labels[0] == 0).view(8, 8).nonzero().tolist()
    assert pos == [[3, 0], [3, 1], [4, 0], [4, 1]]
    # targets stay distances to the box (not to the sub-box)
    assert t.bbox_targets[0].view(8, 8, 4)[3, 0].tolist() == [4, 28, 12, 36]
    # the radius is in strides of each level: 1.5 * 16 = 24 px at level 1
    two = FCOSRangeAssigner(regress_ranges=((-1, 1e8), (-1, 1e8)), center_sampling=True)
    t = assign(two, [gt([[0, 0, 64, 64]], [0])], SIZES, STRIDES, num_classes=1)
    lvl1 = (t.labels[0, 64:] == 0).view(4, 4).nonzero().tolist()
    assert lvl1 == [[1, 1], [1, 2], [2, 1], [2, 2]]  # points 24, 40 inside (8, 56)


def test_norm_on_bbox_divides_by_the_level_stride():
    boxes = gt([[4, 4, 40, 40]], [1])
    plain = assign(FCOSRangeAssigner(regress_ranges=RANGES), [boxes], SIZES, STRIDES, 3)
    normed = assign(FCOSRangeAssigner(regress_ranges=RANGES, norm_on_bbox=True), [boxes], SIZES, STRIDES, 3)
    assert torch.equal(plain.labels, normed.labels)
    assert int((plain.labels[0] == 1).sum()) == 19  # 16 positives on level 0, 3 on level 1 (see above)
    assert normed.bbox_targets[0, index(0, 36, 36)].tolist() == [4, 4, 0.5, 0.5]  # (32, 32, 4, 4) / 8
    assert normed.bbox_targets[0, index(1, 8, 8)].tolist() == [0.25, 0.25, 2, 2]  # (4, 4, 32, 32) / 16
    assert torch.equal(normed.bbox_targets[0, :64], plain.bbox_targets[0, :64] / 8)
    assert torch.equal(normed.bbox_targets[0, 64:], plain.bbox_targets[0, 64:] / 16)
    assert torch.allclose(normed.centerness_targets, plain.centerness_targets)


def test_batch_equals_images_one_by_one_with_empty_images_and_box_types():
    torch.manual_seed(0)
    sizes, strides = [(16, 20), (8, 10), (4, 5)], [8, 16, 32]
    assigner = FCOSRangeAssigner(regress_ranges=((-1, 32), (32, 64), (64, 1e8)), center_sampling=True)
    images = []
    for n in (3, 0, 7):
        xy = torch.rand(n, 2) * 120
        images.append(gt(torch.cat([xy, xy + 8 + torch.rand(n, 2) * 120], 1), torch.randint(0, 4, (n, ))))
    batch = assign(assigner, images, sizes, strides, num_classes=4)
    for i, image in enumerate(images):
        single = assign(assigner, [image], sizes, strides, num_classes=4)
        for name in ('labels', 'bbox_targets', 'centerness_targets', 'gt_inds'):
            assert torch.equal(getattr(batch, name)[i], getattr(single, name)[0]), name
    assert (batch.labels[1] == 4).all() and (batch.gt_inds[1] == -1).all()
    assert (batch.labels[0] < 4).any() and (batch.labels[2] < 4).any()
    boxed = InstanceData(bboxes=HorizontalBoxes(images[2].bboxes), labels=images[2].labels)
    assert torch.equal(assign(assigner, [boxed], sizes, strides, 4).labels[0], batch.labels[2])
    # no box in the whole batch
    empty = assign(assigner, [gt(torch.zeros((0, 4)), []) for _ in range(2)], sizes, strides, 4)
    assert empty.labels.shape == (2, 16 * 20 + 8 * 10 + 4 * 5) and (empty.labels == 4).all()
    assert (empty.bbox_targets == 0).all() and (empty.gt_inds == -1).all()


def written_out_centerness(left, top, right, bottom):
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) in Python floats (the original's formula)."""
    return math.sqrt(min(left, right) / max(left, right) * min(top, bottom) / max(top, bottom))


def test_centerness_target_formula():
    d = torch.tensor([[1., 2., 3., 4.], [5., 5., 5., 5.], [9., 1., 3., 4.]])
    expected = torch.tensor([math.sqrt(1 / 3 * 2 / 4), 1.0, math.sqrt(3 / 9 * 1 / 4)])
    assert torch.allclose(centerness_target(d), expected, rtol=1e-6, atol=0)
    torch.manual_seed(2)
    d = torch.rand(3, 50, 4) * 100 + 0.01  # any leading shape
    before = d.clone()
    out = centerness_target(d)
    assert out.shape == (3, 50) and torch.equal(d, before)  # the input is left as it was
    expected = torch.tensor([[written_out_centerness(*row) for row in img] for img in d.tolist()])
    assert torch.allclose(out, expected, rtol=1e-6, atol=0)
    assert centerness_target(torch.zeros((0, 4))).shape == (0, )
    with pytest.raises(ValueError, match='bbox_targets'):
        centerness_target(torch.ones(5, 3))


def test_assigner_centerness_is_the_formula_on_its_targets():
    """The assigner's center-ness (one function, ``centerness_target``) against the formula written out."""
    torch.manual_seed(3)
    sizes, strides = [(16, 20), (8, 10), (4, 5)], [8, 16, 32]
    xy = torch.rand(12, 2) * 120
    images = [gt(torch.cat([xy, xy + 8 + torch.rand(12, 2) * 100], 1), torch.randint(0, 4, (12, )))]
    for norm_on_bbox in (False, True):
        assigner = FCOSRangeAssigner(regress_ranges=((-1, 32), (32, 64), (64, 1e8)), norm_on_bbox=norm_on_bbox)
        t = assign(assigner, images, sizes, strides, num_classes=4)
        pos = t.labels[0] < 4
        assert int(pos.sum()) > 50
        expected = torch.tensor([written_out_centerness(*d) for d in t.bbox_targets[0][pos].tolist()])
        assert torch.allclose(t.centerness_targets[0][pos], expected, rtol=1e-6, atol=0)
        assert (t.centerness_targets[0][~pos] == 0).all() and (~pos).any()


def test_points_come_from_the_caller():
    """No grid of its own: the targets follow the points it is given (offset, any shift), columns and rows alike."""
    assigner = FCOSRangeAssigner(regress_ranges=((-1, 1e8), ))
    box = [gt([[0, 0, 64, 64]], [0])]
    centred = assign(assigner, box, [(8, 8)], [8], 1, offset=0.5)  # points 4, 12, ..., 60
    corner = assign(assigner, box, [(8, 8)], [8], 1, offset=0.0)  # points 0, 8, ..., 56
    assert centred.bbox_targets[0, 0].tolist() == [4, 4, 60, 60]
    assert corner.labels[0, 0] == 1 and corner.labels[0, 9] == 0  # (0, 0) on the box edge: background
    assert corner.bbox_targets[0, 9].tolist() == [8, 8, 56, 56]  # point (8, 8)
    # points shifted by (+3.25, +5.5) px: x is read from the first row, y from the first column
    points = MlvlPointGenerator([8]).grid_priors([(8, 8)], device='cpu')
    shifted = assigner.assign(box, [points[0] + torch.tensor([3.25, 5.5])], [(8, 8)], [8], 1)
    assert shifted.bbox_targets[0, 8 + 2].tolist() == [23.25, 17.5, 40.75, 46.5]  # column 2, row 1: (23.25, 17.5)
    # with_stride points (x, y, stride_w, stride_h) are taken as they are
    with_stride = MlvlPointGenerator([8]).grid_priors([(8, 8)], device='cpu', with_stride=True)
    assert torch.equal(assigner.assign(box, with_stride, [(8, 8)], [8], 1).bbox_targets, centred.bbox_targets)


def test_errors_name_the_field():
    assigner = FCOSRangeAssigner(regress_ranges=RANGES)
    with pytest.raises(ValueError, match='regress_ranges'):
        assign(assigner, [gt([[0, 0, 8, 8]], [0])], SIZES[:1], STRIDES[:1], 3)
    points = MlvlPointGenerator(STRIDES).grid_priors(SIZES, device='cpu')
    with pytest.raises(ValueError, match=r'mlvl_points \(1\)'):
        assigner.assign([gt([[0, 0, 8, 8]], [0])], points[:1], SIZES, STRIDES, 3)
    with pytest.raises(ValueError, match=r'mlvl_points\[1\]'):  # points of a 4 x 4 map given for a 4 x 5 one
        assigner.assign([gt([[0, 0, 8, 8]], [0])], points, [(8, 8), (4, 5)], STRIDES, 3)
    with pytest.raises(ValueError, match=r'mlvl_points\[0\]'):
        assigner.assign([gt([[0, 0, 8, 8]], [0])], [points[0][:, :1], points[1]], SIZES, STRIDES, 3)
    with pytest.raises(ValueError, match=r'featmap_sizes\[0\]'):
        assigner.assign([gt([[0, 0, 8, 8]], [0])], [points[0][:0], points[1]], [(0, 8), (4, 4)], STRIDES, 3)
    with pytest.raises(TypeError, match='offset'):  # the points (and their offset) are the head's
        FCOSRangeAssigner(offset=0.5)
    with pytest.raises(ValueError, match='labels'):
        assign(assigner, [gt([[0, 0, 8, 8]], [3])], SIZES, STRIDES, 3)
    with pytest.raises(ValueError, match='bboxes'):
        assign(assigner, [InstanceData(bboxes=torch.zeros(2, 5), labels=torch.zeros(2).long())], SIZES, STRIDES, 3)
    with pytest.raises(ValueError, match=r'regress_ranges\[1\]'):
        FCOSRangeAssigner(regress_ranges=((-1, 64), (128, 64)))
    with pytest.raises(ValueError, match='center_sample_radius'):
        FCOSRangeAssigner(center_sampling=True, center_sample_radius=0)
