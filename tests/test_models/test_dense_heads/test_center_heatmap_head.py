"""CenterHeatmapHead and CenterHeatmapDecoder: hand-computed decoding under both kinds of test pipeline, losses."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import CenterHeatmapHead
from mmkp.models.task_modules import CenterHeatmapDecoder


def _maps():
    """One class-1 peak at cell (y=3, x=5) of an 8x10 map, size (4, 2) cells, offset (0.25, 0.5)."""
    heat = torch.full((1, 2, 8, 10), -10.)
    heat[0, 1, 3, 5] = 2.0
    heat[0, 0, 6, 1] = 0.0  # second peak, score 0.5
    size = torch.zeros(1, 2, 8, 10)
    size[0, :, 3, 5] = torch.tensor([4., 2.])
    size[0, :, 6, 1] = torch.tensor([2., 2.])
    offset = torch.zeros(1, 2, 8, 10)
    offset[0, :, 3, 5] = torch.tensor([0.25, 0.5])
    return heat, size, offset


def test_decoder_resize_pipeline():
    """Resize + Pad: input = original x 0.5, batch input 32x40, stride 4; no border meta."""
    heat, size, offset = _maps()
    meta = dict(batch_input_shape=(32, 40), img_shape=(30, 40), ori_shape=(60, 80), scale_factor=(0.5, 0.5))
    res = CenterHeatmapDecoder(topk=2).decode(heat, size, offset, [meta])[0]
    # center (5.25, 3.5) cells -> box (3.25, 2.5, 7.25, 4.5) cells -> x4 input px -> /0.5 original px
    assert res.bboxes[0].tolist() == pytest.approx([26., 20., 58., 36.])
    assert res.labels.tolist() == [1, 0]
    assert res.scores[0].item() == pytest.approx(torch.sigmoid(torch.tensor(2.)).item())
    assert res.bboxes[1].tolist() == pytest.approx([0., 40., 16., 56.])
    unscaled = CenterHeatmapDecoder(topk=2).decode(heat, size, offset, [meta], rescale=False)[0]
    assert unscaled.bboxes[0].tolist() == pytest.approx([13., 10., 29., 18.])


def test_decoder_center_crop_pad_pipeline():
    """RandomCenterCropPad test mode: image pasted at (top=3, left=7) of the canvas, no resize."""
    heat, size, offset = _maps()
    meta = dict(batch_input_shape=(32, 40), img_shape=(32, 40), ori_shape=(25, 30), border=[3., 28., 7., 37.])
    res = CenterHeatmapDecoder(topk=1).decode(heat, size, offset, [meta])[0]
    assert res.bboxes[0].tolist() == pytest.approx([13. - 7., 10. - 3., 29. - 7., 18. - 3.])
    # second peak: cells (0, 5, 2, 7) -> input px (0, 20, 8, 28) -> minus the border (7, 3): (-7, 17, 1, 25)
    unclipped = CenterHeatmapDecoder(topk=2).decode(heat, size, offset, [meta])[0]
    assert unclipped.bboxes[1].tolist() == pytest.approx([-7., 17., 1., 25.])
    clipped = CenterHeatmapDecoder(topk=2, clip_border=True).decode(heat, size, offset, [meta])[0]
    torch.testing.assert_close(clipped.bboxes, torch.tensor([[6., 7., 22., 15.], [0., 17., 1., 25.]]))  # x1 to 0


def test_decoder_explicit_ratio_and_local_maximum():
    heat, size, offset = _maps()
    heat[0, 1, 3, 6] = 1.0  # a lower neighbour of the peak is suppressed by the 3x3 window
    meta = dict(batch_input_shape=(32, 40), img_shape=(32, 40), ori_shape=(32, 40))
    res = CenterHeatmapDecoder(topk=3, ratio=0.5).decode(heat, size, offset, [meta])[0]
    assert res.bboxes[0].tolist() == pytest.approx([6.5, 5., 14.5, 9.])  # cells x 2
    # the neighbour (score sigmoid(1) = 0.73) is not a peak: after the two peaks comes a background cell
    assert res.scores.tolist() == pytest.approx([torch.sigmoid(torch.tensor(v)).item() for v in (2., 0., -10.)])
    assert res.labels[:2].tolist() == [1, 0]
    kept = CenterHeatmapDecoder(topk=3, ratio=0.5, local_maximum_kernel=1).decode(heat, size, offset, [meta])[0]
    assert kept.scores[1].item() == pytest.approx(torch.sigmoid(torch.tensor(1.)).item())  # 1 x 1: every cell


def _head(**kwargs):
    head = CenterHeatmapHead(num_classes=3, in_channels=8, feat_channels=8, **kwargs)
    head.init_weights()
    return head


def test_head_init_and_shapes():
    head = _head(num_stacks=2)
    assert all(b[-1].bias.eq(-2.19).all() for b in head.heatmap_branches)
    assert all(b[-1].bias.eq(0).all() for b in head.size_branches)
    assert head.size_branches[0][-1].weight.std() < 0.01
    feats = [torch.randn(2, 8, 16, 20) for _ in range(2)]
    heat, size, off = head(feats)
    assert len(heat) == 2 and heat[0].shape == (2, 3, 16, 20) and size[1].shape == (2, 2, 16, 20)
    with pytest.raises(ValueError, match='num_stacks=2'):
        head(feats[:1])


# ------------------------------------------------------------------------------------------------------------------
# losses on a hand-built case: 2 images of 32 x 32 input pixels, 8 x 8 maps (stride 4)
#
# image 0: A = (5, 6, 23, 20) class 0, B = (16, 2, 28, 14) class 2; image 1: C = (0, 0, 10, 6) class 1.
# In cells (/ 4): A = (1.25, 1.5, 5.75, 5), B = (4, 0.5, 7, 3.5), C = (0, 0, 2.5, 1.5), all inside [0, 7] (the
# original's clip to the output map changes nothing). Centers (x, y): A (3.5, 3.25), B (5.5, 2), C (1.25, 0.75), so
# the integer cells (x, y) are A (3, 3), B (5, 2), C (1, 0) and the offsets A (0.5, 0.25), B (0.5, 0), C (0.25, 0.75);
# sizes (w, h): A (4.5, 3.5), B (3, 3), C (2.5, 1.5).
# Radii (original formula, IoU 0.7, on ceil(h), ceil(w)): A (4, 5) -> 1.216 -> 1; B (3, 3) -> 0.820 -> 0;
# C (2, 3) -> 0.658 -> 0. Gaussian of A: sigma = (2 * 1 + 1) / 6 = 0.5, exp(-(dx^2 + dy^2) / (2 sigma^2)) =
# exp(-2) next to the center, exp(-4) on the diagonal; B and C are single cells of 1.

GT_BOXES = [
    InstanceData(bboxes=torch.tensor([[5., 6., 23., 20.], [16., 2., 28., 14.]]), labels=torch.tensor([0, 2])),
    InstanceData(bboxes=torch.tensor([[0., 0., 10., 6.]]), labels=torch.tensor([1]))
]
LOSS_METAS = [dict(batch_input_shape=(32, 32), img_shape=(32, 32)) for _ in range(2)]
#: per object: image, class, center cell (y, x), size (w, h), offset (dx, dy), in cells
OBJECTS = [(0, 0, (3, 3), (4.5, 3.5), (0.5, 0.25)), (0, 2, (2, 5), (3.0, 3.0), (0.5, 0.0)),
           (1, 1, (0, 1), (2.5, 1.5), (0.25, 0.75))]


def original_gaussian_radius(h, w, min_overlap):
    """xingyizhou/CenterNet@4c50fd3 ``src/lib/utils/image.py::gaussian_radius``, written out (the uncorrected roots
    ``(b + sqrt(b^2 - 4ac)) / 2``)."""
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    r2 = (b2 + math.sqrt(b2**2 - 4 * 4 * c2)) / 2
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def hand_heatmap():
    """The (2, 3, 8, 8) target of GT_BOXES, written cell by cell."""
    target = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            target[0, 0, 3 + dy, 3 + dx] = math.exp(-2 * (dx * dx + dy * dy))  # A, radius 1
    target[0, 2, 2, 5] = 1  # B, radius 0
    target[1, 1, 0, 1] = 1  # C, radius 0
    return target


def focal_reference(logits, target, clamp_eps):
    """Penalty-reduced focal loss, written out (CornerNet; xingyizhou/CenterNet@4c50fd3
    ``src/lib/models/losses.py::_neg_loss``): with p = sigmoid(x), clamped to [eps, 1 - eps] when eps > 0 (the
    originals' ``_sigmoid``), pos (y == 1): -(1 - p)^2 log p, neg: -(1 - y)^4 p^2 log(1 - p), summed over all
    pixels, classes and images and divided by the number of positives."""
    x = logits.double()
    if clamp_eps > 0:
        p = torch.sigmoid(x).clamp(clamp_eps, 1 - clamp_eps)
        log_p, log_1mp = torch.log(p), torch.log(1 - p)
    else:
        p, log_p, log_1mp = torch.sigmoid(x), F.logsigmoid(x), F.logsigmoid(-x)
    pos = target.eq(1)
    pos_loss = -((1 - p)**2 * log_p)[pos].sum()
    neg_loss = -((1 - target)**4 * p**2 * log_1mp)[~pos].sum()
    return (pos_loss + neg_loss) / pos.sum()


def reg_l1_reference(pred, channel):
    """RegL1Loss of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/losses.py``: sum over objects of |pred - target|
    at the object's center cell, both coordinates, divided by mask.sum() + 1e-4 where the mask is expanded to the 2
    coordinates, i.e. 2 x #objects + 1e-4. ``channel`` 3 picks sizes, 4 offsets from OBJECTS."""
    total = 0.
    for obj in OBJECTS:
        img, (y, x), target = obj[0], obj[2], obj[channel]
        total += sum(abs(pred[img, c, y, x].item() - target[c]) for c in range(2))
    return total / (2 * len(OBJECTS) + 1e-4)


def _loss_maps():
    """Per stack (2 stacks): heatmap logits, sizes and offsets; saturated logits where the probability clamp counts,
    and a large value at the cell that the padding slot of image 1 (1 object for 2 slots) gathers."""
    g = torch.Generator().manual_seed(0)
    heats = [torch.randn(2, 3, 8, 8, generator=g) for _ in range(2)]
    heats[0][0, 0, 3, 3] = -20.  # a positive predicted p ~ 2e-9: log p is -20, clamped log(1e-4)
    heats[0][1, 0, 7, 7] = 20.  # a negative (y = 0) predicted p ~ 1 - 2e-9: log(1 - p) is -20, clamped log(1e-4)
    sizes = [3 * torch.rand(2, 2, 8, 8, generator=g) for _ in range(2)]
    offsets = [torch.rand(2, 2, 8, 8, generator=g) for _ in range(2)]
    for maps in (sizes, offsets):
        for m in maps:
            m[1, :, 0, 0] = 1000.  # flat index 0: where the padding slot of image 1 points
    return heats, sizes, offsets


def test_hand_built_targets():
    """The radii, cells and heatmap the loss test below relies on, from the formulas written out."""
    radii = [int(original_gaussian_radius(math.ceil(h), math.ceil(w), 0.7)) for _, _, _, (w, h), _ in OBJECTS]
    assert radii == [1, 0, 0]
    t = _head().assigner.assign(GT_BOXES, (8, 8), (32, 32), 3, LOSS_METAS)
    torch.testing.assert_close(t.heatmaps['center'].double(), hand_heatmap(), rtol=0, atol=1e-7)
    assert t.indices['center'].tolist() == [[3 * 8 + 3, 2 * 8 + 5], [0 * 8 + 1, 0]]
    assert t.mask.tolist() == [[True, True], [True, False]]
    assert t.sizes[t.mask].tolist() == [list(o[3]) for o in OBJECTS]
    assert t.offsets['center'][t.mask].tolist() == [list(o[4]) for o in OBJECTS]


@pytest.mark.parametrize('clamp_eps', [1e-4, 0.])
def test_head_losses_equal_the_written_out_formulas(clamp_eps):
    """Focal loss (with and without the probability clamp), size and offset RegL1 losses, averaged over 2 stacks."""
    head = _head(num_stacks=2, loss_heatmap=dict(type='HeatmapFocalLoss', clamp_eps=clamp_eps))
    heats, sizes, offsets = _loss_maps()
    losses = head.loss_by_feat(heats, sizes, offsets, GT_BOXES, LOSS_METAS)
    target = hand_heatmap()
    expect_heat = sum(focal_reference(h, target, clamp_eps) for h in heats) / 2
    expect_size = sum(0.1 * reg_l1_reference(s, 3) for s in sizes) / 2  # loss_size weight 0.1
    expect_offset = sum(reg_l1_reference(o, 4) for o in offsets) / 2  # loss_offset weight 1
    assert losses['loss_heatmap'].item() == pytest.approx(expect_heat.item(), rel=1e-5)
    assert losses['loss_size'].item() == pytest.approx(expect_size, rel=1e-5)
    assert losses['loss_offset'].item() == pytest.approx(expect_offset, rel=1e-5)
    # the case tells the two options apart: at the two saturated cells of stack 0 a clamped term is about
    # -log(1e-4) = 9.2 instead of 20, so the stack's losses differ by about 2 x (20 - 9.2) / 3 positives = 7.2
    clamped, exact = focal_reference(heats[0], target, 1e-4), focal_reference(heats[0], target, 0.)
    assert (exact - clamped).item() == pytest.approx(2 * (20 - 9.21) / 3, abs=0.05)


def test_head_loss_gradient_reaches_every_branch():
    torch.manual_seed(0)
    head = _head(num_stacks=2)
    feats = [torch.randn(2, 8, 8, 8, requires_grad=True) for _ in range(2)]
    heat, size, off = head(feats)
    losses = head.loss_by_feat(heat, size, off, GT_BOXES, LOSS_METAS)
    sum(losses.values()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------------------------------
# prediction: score threshold, optional class-aware NMS, max_per_img


def _nms_maps():
    """16 x 16 maps (64 x 64 input, stride 4), no offsets; peaks (class, cell (y, x), logit, size (w, h) in cells):
    class 0 at (4, 4), logit 3, 8 x 8 -> box (0, 0, 32, 32) px; class 0 at (4, 6), logit 2, 8 x 8 -> (8, 0, 40, 32),
    IoU with the first 24 x 32 / (2 x 1024 - 768) = 0.6; class 1 at (4, 6), logit 1, same box; class 2 at (12, 12),
    logit 0.5, 4 x 4 -> (40, 40, 56, 56). Elsewhere logit -10 (score 4.5e-5, below score_thr)."""
    heat = torch.full((1, 3, 16, 16), -10.)
    size = torch.zeros(1, 2, 16, 16)
    for label, (y, x), logit, wh in ((0, (4, 4), 3., 8.), (0, (4, 6), 2., 8.), (1, (4, 6), 1., 8.),
                                     (2, (12, 12), .5, 4.)):
        heat[0, label, y, x] = logit
        size[0, :, y, x] = wh
    return [heat], [size], [torch.zeros(1, 2, 16, 16)]


NMS_METAS = [dict(batch_input_shape=(64, 64), img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.))]


def test_head_predict_with_optional_nms():
    head = _head(test_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=5, score_thr=0.01))
    sigmoid = [torch.sigmoid(torch.tensor(v)).item() for v in (3., 2., 1., .5)]
    without = head.predict_by_feat(*_nms_maps(), batch_img_metas=NMS_METAS, rescale=True, with_nms=False)[0]
    assert without.labels.tolist() == [0, 0, 1, 2]
    assert without.scores.tolist() == pytest.approx(sigmoid)
    assert without.bboxes.tolist() == [[0, 0, 32, 32], [8, 0, 40, 32], [8, 0, 40, 32], [40, 40, 56, 56]]
    # NMS (IoU 0.6 > 0.5) removes the lower class-0 box; the class-1 box on the same place stays (class-aware)
    res = head.predict_by_feat(*_nms_maps(), batch_img_metas=NMS_METAS, rescale=True)[0]
    assert len(without) == 4 and len(res) == 3
    assert res.labels.tolist() == [0, 1, 2]
    assert res.scores.tolist() == pytest.approx([sigmoid[0], sigmoid[2], sigmoid[3]])
    assert res.bboxes.tolist() == [[0, 0, 32, 32], [8, 0, 40, 32], [40, 40, 56, 56]]
    # max_per_img keeps the best after NMS; without test_cfg.nms nothing is suppressed
    top2 = _head(test_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=2, score_thr=0.01))
    assert top2.predict_by_feat(*_nms_maps(), batch_img_metas=NMS_METAS, rescale=True)[0].labels.tolist() == [0, 1]
    plain = _head(test_cfg=dict(max_per_img=5, score_thr=0.01))
    assert len(plain.predict_by_feat(*_nms_maps(), batch_img_metas=NMS_METAS, rescale=True)[0]) == 4
