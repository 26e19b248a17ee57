"""GaussianHeatmapAssigner against a direct per-box implementation of reference/DETECTORS.md section 2.7."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmkp.models.task_modules import GaussianHeatmapAssigner
from mmkp.models.utils import gaussian_radius


def ref_radius(det_size, min_overlap, formula):
    """The three quadratics as written in CornerNet-Lite / xingyizhou/CenterNet ``gaussian_radius``."""
    height, width = det_size
    a1, b1, c1 = 1, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    sq1 = math.sqrt(b1**2 - 4 * a1 * c1)
    a2, b2, c2 = 4, 2 * (height + width), (1 - min_overlap) * width * height
    sq2 = math.sqrt(b2**2 - 4 * a2 * c2)
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    sq3 = math.sqrt(b3**2 - 4 * a3 * c3)
    if formula == 'corrected':
        r1, r2, r3 = (b1 - sq1) / (2 * a1), (b2 - sq2) / (2 * a2), (b3 + sq3) / (2 * a3)
    else:
        r1, r2, r3 = (b1 + sq1) / 2, (b2 + sq2) / 2, (b3 + sq3) / 2
    return min(r1, r2, r3)


def ref_draw_gaussian(heatmap, center, radius, sigma_factor):
    """``draw_gaussian`` of CornerNet-Lite (sigma = diameter / 6) with the triplets' ``delte`` divisor."""
    diameter = 2 * radius + 1
    sigma = diameter / sigma_factor
    m = n = (diameter - 1.) / 2.
    y, x = np.ogrid[-m:m + 1, -n:n + 1]
    gaussian = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    gaussian[gaussian < np.finfo(gaussian.dtype).eps * gaussian.max()] = 0
    x, y = center
    height, width = heatmap.shape[0:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    masked_heatmap = heatmap[y - top:y + bottom, x - left:x + right]
    masked_gaussian = gaussian[radius - top:radius + bottom, radius - left:radius + right]
    np.maximum(masked_heatmap, masked_gaussian, out=masked_heatmap)


def ref_targets(boxes_per_img, labels_per_img, num_classes, out_hw, in_hw, ratio, formula, min_overlap,
                sigma_factors, clip_to):
    """Per box loop of CornerNet-Lite ``core/sample/cornernet.py`` (corners) and ctdet (center)."""
    out_h, out_w = out_hw
    batch = len(boxes_per_img)
    heat = {k: np.zeros((batch, num_classes, out_h, out_w), np.float32) for k in sigma_factors}
    per_obj = []
    for b, (boxes, labels) in enumerate(zip(boxes_per_img, labels_per_img)):
        objs = []
        for box, label in zip(boxes, labels):
            x1, y1, x2, y2 = [float(v) for v in box]
            if clip_to == 'input':
                x1, x2 = [min(max(v, 0), in_hw[1] - 1) for v in (x1, x2)]
                y1, y2 = [min(max(v, 0), in_hw[0] - 1) for v in (y1, y2)]
            fx1, fy1, fx2, fy2 = x1 * ratio[0], y1 * ratio[1], x2 * ratio[0], y2 * ratio[1]
            if clip_to == 'output':
                fx1, fx2 = [min(max(v, 0), out_w - 1) for v in (fx1, fx2)]
                fy1, fy2 = [min(max(v, 0), out_h - 1) for v in (fy1, fy2)]
            w, h = fx2 - fx1, fy2 - fy1
            if w <= 0 or h <= 0:
                objs.append(None)
                continue
            radius = max(0, int(ref_radius((math.ceil(h), math.ceil(w)), min_overlap, formula)))
            pts = dict(top_left=(fx1, fy1), bottom_right=(fx2, fy2), center=((fx1 + fx2) / 2, (fy1 + fy2) / 2))
            obj = dict(label=int(label), size=(w, h))
            for name, sf in sigma_factors.items():
                px, py = pts[name]
                # int() as the originals; the clamp (a guard of the assigner) only acts with clip_to=None
                ix, iy = min(max(int(px), 0), out_w - 1), min(max(int(py), 0), out_h - 1)
                ref_draw_gaussian(heat[name][b, int(label)], (ix, iy), radius, sf)
                obj[name] = (iy * out_w + ix, (px - ix, py - iy))
            objs.append(obj)
        per_obj.append(objs)
    return heat, per_obj


def random_boxes(rng, num, in_h, in_w):
    """Random boxes including border-touching, outside-image, tiny and duplicated same-class boxes."""
    cx = rng.uniform(-20, in_w + 20, num)
    cy = rng.uniform(-20, in_h + 20, num)
    w = rng.choice([0.5, 1.5, 3.0, 12.0, 40.0, 130.0, 300.0], num) * rng.uniform(0.8, 1.2, num)
    h = rng.choice([0.5, 2.0, 5.0, 25.0, 90.0, 200.0], num) * rng.uniform(0.8, 1.2, num)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    boxes[0] = [0, 0, in_w - 1, in_h - 1]  # whole image, touches every border
    boxes[1] = [in_w - 5, in_h - 9, in_w - 1, in_h - 1]  # bottom-right corner
    boxes[2] = [10.2, 10.7, 11.0, 11.3]  # tiny
    boxes[3] = boxes[4] + np.array([3, 2, 3, 2])  # overlapping copy
    return boxes


@pytest.mark.parametrize('formula,min_overlap,sigma,clip_to,ratio', [
    ('corrected', 0.3, 6.0, 'input', (128 / 511, 128 / 511)),
    ('original', 0.7, dict(top_left=6.0, bottom_right=6.0, center=5.0), 'input', (128 / 511, 128 / 511)),
    ('original', 0.7, 6.0, 'output', (0.25, 0.25)),
    ('corrected', 0.5, 6.0, None, (0.25, 0.25)),
])
def test_assigner_matches_per_box_reference(formula, min_overlap, sigma, clip_to, ratio):
    rng = np.random.RandomState(0)
    num_classes, in_hw = 3, (511, 511) if ratio[0] != 0.25 else (512, 512)
    out_hw = (128, 128)
    boxes_per_img, labels_per_img = [], []
    for n in (25, 0, 40):
        boxes = random_boxes(rng, max(n, 5), *in_hw)[:n]
        labels = rng.randint(0, num_classes, n)
        labels[3:5] = 1 if n else labels[3:5]
        boxes_per_img.append(boxes)
        labels_per_img.append(labels)
    keypoints = ('top_left', 'bottom_right', 'center')
    sigma_factors = sigma if isinstance(sigma, dict) else {k: sigma for k in keypoints}
    assigner = GaussianHeatmapAssigner(
        keypoints=keypoints,
        ratio=None if ratio == (0.25, 0.25) else ratio,
        radius_formula=formula,
        min_overlap=min_overlap,
        sigma_factor=sigma,
        clip_to=clip_to)
    gts = [
        InstanceData(bboxes=torch.tensor(b, dtype=torch.float32), labels=torch.tensor(lb, dtype=torch.long))
        for b, lb in zip(boxes_per_img, labels_per_img)
    ]
    # the reference sees the same float32 boxes
    boxes_per_img = [g.bboxes.double().numpy() for g in gts]
    targets = assigner.assign(gts, out_hw, in_hw, num_classes)
    heat, per_obj = ref_targets(boxes_per_img, labels_per_img, num_classes, out_hw, in_hw, ratio, formula,
                                min_overlap, sigma_factors, clip_to)
    for name in keypoints:
        np.testing.assert_allclose(targets.heatmaps[name].numpy(), heat[name], rtol=0, atol=2e-6)
        assert (targets.heatmaps[name] == 1).sum() > 0
    for b, objs in enumerate(per_obj):
        for slot, obj in enumerate(objs):
            if obj is None:
                assert not targets.mask[b, slot]
                continue
            assert targets.mask[b, slot]
            assert targets.labels[b, slot] == obj['label']
            np.testing.assert_allclose(targets.sizes[b, slot].numpy(), obj['size'], rtol=1e-5, atol=1e-4)
            for name in keypoints:
                index, offset = obj[name]
                assert targets.indices[name][b, slot] == index
                np.testing.assert_allclose(targets.offsets[name][b, slot].numpy(), offset, atol=1e-4)
    assert targets.mask.shape == (3, 40)
    assert not targets.mask[1].any()  # the empty image


def test_radius_values_from_spec():
    """reference/DETECTORS.md 2.7: 10x10 corrected(0.3)=2.26, corrected(0.7)=0.82, original(0.7)=2.73, etc."""
    size = torch.tensor([10., 32., 64.], dtype=torch.float64)
    np.testing.assert_allclose(gaussian_radius(size, size, 0.3, 'corrected'), [2.26, 7.24, 14.47], atol=0.006)
    np.testing.assert_allclose(gaussian_radius(size, size, 0.7, 'corrected'), [0.82, 2.61, 5.23], atol=0.006)
    np.testing.assert_allclose(gaussian_radius(size, size, 0.7, 'original'), [2.73, 8.75, 17.49], atol=0.006)
    # the original form is always 4 * o * r3 of the corrected one
    h, w = torch.tensor([3., 17., 80.], dtype=torch.float64), torch.tensor([9., 17., 5.], dtype=torch.float64)
    for o in (0.3, 0.7):
        for hh, ww, r in zip(h, w, gaussian_radius(h, w, o, 'original')):
            assert r.item() == pytest.approx(ref_radius((hh.item(), ww.item()), o, 'original'), rel=1e-12)


def test_hand_computed_single_box():
    """One 40x40 box at stride 4: center cell (15, 12), radius int(r(10, 10)) = 2, sigma = 5 / 6."""
    assigner = GaussianHeatmapAssigner(keypoints=('center', ), stride=4, radius_formula='corrected', min_overlap=0.3)
    gt = InstanceData(bboxes=torch.tensor([[42., 30., 82., 70.]]), labels=torch.tensor([2]))
    t = assigner.assign([gt], (32, 32), (128, 128), num_classes=3)
    heat = t.heatmaps['center'][0, 2]
    assert heat[12, 15] == 1  # center (62, 50) / 4 = (15.5, 12.5)
    sigma = 5 / 6
    assert heat[12, 16].item() == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert heat[14, 17].item() == pytest.approx(math.exp(-8 / (2 * sigma**2)), rel=1e-6)
    assert heat[12, 18] == 0  # outside the radius
    assert heat.gt(0).sum() == 25
    assert t.heatmaps['center'][0, :2].abs().sum() == 0
    assert t.indices['center'][0, 0] == 12 * 32 + 15
    assert t.offsets['center'][0, 0].tolist() == [0.5, 0.5]
    assert t.sizes[0, 0].tolist() == [10.0, 10.0]


def test_same_class_overlap_takes_max_not_sum():
    assigner = GaussianHeatmapAssigner(keypoints=('center', ), stride=1)
    box = torch.tensor([[10., 10., 30., 30.], [11., 10., 31., 30.]])
    t = assigner.assign([InstanceData(bboxes=box, labels=torch.tensor([0, 0]))], (40, 40), (40, 40), 1)
    assert t.heatmaps['center'].max() == 1
    assert (t.heatmaps['center'] == 1).sum() == 2


def test_errors():
    with pytest.raises(ValueError, match='keypoints'):
        GaussianHeatmapAssigner(keypoints=('middle', ))
    with pytest.raises(ValueError, match='radius_formula'):
        GaussianHeatmapAssigner(radius_formula='buggy')
    with pytest.raises(ValueError, match='either ratio or stride'):
        GaussianHeatmapAssigner(ratio=0.25, stride=4)
    assigner = GaussianHeatmapAssigner()
    gt = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]), labels=torch.tensor([5]))
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\)'):
        assigner.assign([gt], (8, 8), (32, 32), 3)


def test_compact_heatmaps_hold_exactly_the_occupied_planes():
    """Planes (image, class) with an object are stored, ascending, equal to the dense planes; the rest is zero."""
    assigner = GaussianHeatmapAssigner(keypoints=('top_left', 'center'), stride=4)
    gts = [
        InstanceData(bboxes=torch.tensor([[4., 4., 40., 30.], [50., 8., 90., 60.], [0., 0., 20., 20.]]),
                     labels=torch.tensor([3, 0, 3])),
        InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long)),
        # the second box is empty after clipping: its plane (image 2, class 1) holds nothing
        InstanceData(bboxes=torch.tensor([[10., 12., 60., 50.], [200., 200., 210., 220.]]),
                     labels=torch.tensor([4, 1])),
    ]
    t = assigner.assign(gts, (32, 32), (128, 128), num_classes=5)
    for name in ('top_left', 'center'):
        compact = t.compact_heatmaps[name]
        assert compact.planes.tolist() == [0 * 5 + 0, 0 * 5 + 3, 2 * 5 + 4]
        assert compact.shape == (3, 5, 32, 32)
        dense = t.heatmaps[name]
        assert dense.shape == (3, 5, 32, 32)
        flat = dense.view(15, 32, 32)
        assert torch.equal(flat[compact.planes], compact.values)
        others = torch.ones(15, dtype=torch.bool)
        others[compact.planes] = False
        assert flat[others].abs().sum() == 0
        assert (compact.values.flatten(1).max(1).values == 1).all()
    assert t.heatmaps is t.heatmaps  # built once


def test_compact_heatmaps_of_a_batch_without_objects():
    assigner = GaussianHeatmapAssigner(keypoints=('center', ), stride=4)
    gts = [InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))] * 2
    t = assigner.assign(gts, (8, 8), (32, 32), num_classes=3)
    assert t.compact_heatmaps['center'].values.shape == (0, 8, 8)
    assert t.heatmaps['center'].shape == (2, 3, 8, 8) and t.heatmaps['center'].abs().sum() == 0


def test_heatmap_for_gives_each_loss_the_form_it_takes():
    from mmdet.models.losses import GaussianFocalLoss

    from mmkp.models.losses import HeatmapFocalLoss
    from mmkp.models.utils import CompactHeatmap
    assigner = GaussianHeatmapAssigner(keypoints=('center', ), stride=4)
    gt = InstanceData(bboxes=torch.tensor([[42., 30., 82., 70.]]), labels=torch.tensor([2]))
    t = assigner.assign([gt], (32, 32), (128, 128), num_classes=3)
    assert t.compact_heatmaps['center'].occupancy == pytest.approx(1 / 3)
    assert isinstance(t.heatmap_for(HeatmapFocalLoss(), 'center'), CompactHeatmap)
    dense = t.heatmap_for(GaussianFocalLoss(), 'center')  # mmdet's loss takes dense (B, C, H, W) targets
    assert isinstance(dense, torch.Tensor) and dense.shape == (1, 3, 32, 32) and dense[0, 2, 12, 15] == 1
    # more than half of the planes occupied: the dense heatmap, one tensor for every call (stacks share it)
    gt = InstanceData(bboxes=torch.tensor([[42., 30., 82., 70.], [2., 3., 30., 40.]]), labels=torch.tensor([2, 0]))
    t = assigner.assign([gt], (32, 32), (128, 128), num_classes=3)
    assert t.compact_heatmaps['center'].occupancy == pytest.approx(2 / 3)
    first = t.heatmap_for(HeatmapFocalLoss(), 'center')
    assert isinstance(first, torch.Tensor) and first is t.heatmap_for(HeatmapFocalLoss(), 'center')
