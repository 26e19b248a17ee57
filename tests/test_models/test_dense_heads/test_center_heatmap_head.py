"""CenterHeatmapHead and CenterHeatmapDecoder: hand-computed decoding under both kinds of test pipeline, losses."""
import pytest
import torch
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
    clipped = CenterHeatmapDecoder(topk=2, clip_border=True).decode(heat, size, offset, [meta])[0]
    assert clipped.bboxes.min() >= 0 and clipped.bboxes[:, 2].max() <= 30 and clipped.bboxes[:, 3].max() <= 25


def test_decoder_explicit_ratio_and_local_maximum():
    heat, size, offset = _maps()
    heat[0, 1, 3, 6] = 1.0  # a lower neighbour of the peak is suppressed by the 3x3 window
    meta = dict(batch_input_shape=(32, 40), img_shape=(32, 40), ori_shape=(32, 40))
    res = CenterHeatmapDecoder(topk=3, ratio=0.5).decode(heat, size, offset, [meta])[0]
    assert res.bboxes[0].tolist() == pytest.approx([6.5, 5., 14.5, 9.])  # cells x 2
    assert (res.scores[1:] <= 0.5 + 1e-6).all()


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


def test_head_loss_values_and_gradient():
    """Losses equal the formulas computed from the assigner's targets; every branch receives a gradient."""
    torch.manual_seed(0)
    head = _head(num_stacks=2)
    feats = [torch.randn(2, 8, 16, 16, requires_grad=True) for _ in range(2)]
    gts = [
        InstanceData(bboxes=torch.tensor([[4., 8., 30., 40.], [20., 20., 60., 50.]]), labels=torch.tensor([0, 2])),
        InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    ]
    metas = [dict(batch_input_shape=(64, 64), img_shape=(64, 64)) for _ in range(2)]
    heat, size, off = head(feats)
    losses = head.loss_by_feat(heat, size, off, gts, metas)
    t = head.assigner.assign(gts, (16, 16), (64, 64), 3, metas)
    from mmkp.models.losses import heatmap_focal_loss
    expect_heat = sum(heatmap_focal_loss(h, t.heatmaps['center']) for h in heat) / 2
    assert losses['loss_heatmap'].item() == pytest.approx(expect_heat.item(), rel=1e-6)
    idx = t.indices['center'][0, :2]
    expect_size = 0
    for s in size:
        pred = s[0].flatten(1)[:, idx].t()
        expect_size += 0.1 * (pred - t.sizes[0, :2]).abs().sum() / 4
    assert losses['loss_size'].item() == pytest.approx(expect_size.item() / 2, rel=1e-4)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters())


def test_head_predict_with_optional_nms():
    head = _head(test_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=5, score_thr=0.01))
    feats = [torch.randn(1, 8, 16, 16)]
    metas = [dict(batch_input_shape=(64, 64), img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.))]
    res = head.predict_by_feat(*head(feats), batch_img_metas=metas)[0]
    assert len(res) <= 5 and (res.scores > 0.01).all()
    assert (res.scores[:-1] >= res.scores[1:]).all()
