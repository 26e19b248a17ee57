"""HeatmapFocalLoss against the originals' ``_focal_loss`` and against hand-computed values."""
import math

import pytest
import torch

from mmkp.models.losses import HeatmapFocalLoss, heatmap_focal_loss


def original_focal_loss(logits, gt):
    """CornerNet-Lite ``core/models/py_utils/losses.py::_focal_loss`` on ``_sigmoid`` outputs."""
    pred = torch.clamp(logits.sigmoid(), min=1e-4, max=1 - 1e-4)
    pos_inds = gt.eq(1)
    neg_inds = gt.lt(1)
    neg_weights = torch.pow(1 - gt[neg_inds], 4)
    pos_pred = pred[pos_inds]
    neg_pred = pred[neg_inds]
    pos_loss = torch.log(pos_pred) * torch.pow(1 - pos_pred, 2)
    neg_loss = torch.log(1 - neg_pred) * torch.pow(neg_pred, 2) * neg_weights
    num_pos = pos_inds.float().sum()
    if pos_pred.nelement() == 0:
        return -neg_loss.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


def make_target(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64) * 0.9
    target[0, 1, 4, 5] = 1
    target[1, 2, 10, 3] = 1
    target[1, 0, 0, 0] = 1
    return target


def test_matches_original_with_clamp():
    target = make_target()
    logits = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 4
    ours = heatmap_focal_loss(logits, target, clamp_eps=1e-4)
    assert ours.item() == pytest.approx(original_focal_loss(logits.float(), target.float()).item(), rel=1e-5)


def test_no_positive_uses_negative_sum():
    target = make_target()
    target[target == 1] = 0.5
    logits = torch.randn(2, 3, 16, 16)
    assert heatmap_focal_loss(logits, target).item() == pytest.approx(
        original_focal_loss(logits, target).item(), rel=1e-5)


def test_hand_computed():
    # one positive pixel with logit 0 (p = 0.5) and one negative with y = 0.5, logit 0
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.5]]]])
    pos = 0.25 * math.log(0.5)
    neg = 0.5**4 * 0.25 * math.log(0.5)
    assert heatmap_focal_loss(logits, target, clamp_eps=0).item() == pytest.approx(-(pos + neg), rel=1e-6)
    loss = HeatmapFocalLoss(loss_weight=2.0)(logits, target, avg_factor=4.0)
    assert loss.item() == pytest.approx(-2 * (pos + neg) / 4, rel=1e-6)


def test_weight_masks_both_terms_but_not_the_count():
    target = make_target()
    logits = torch.randn(2, 3, 16, 16)
    weight = torch.ones_like(target)
    weight[1] = 0
    full_first = heatmap_focal_loss(logits[:1], target[:1].float(), avg_factor=3)
    assert heatmap_focal_loss(logits, target.float(), weight=weight).item() == pytest.approx(full_first.item(),
                                                                                              rel=1e-5)


def test_stable_and_gradient_without_clamp():
    target = make_target()
    logits = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 100  # saturated logits
    logits.requires_grad_(True)
    loss = heatmap_focal_loss(logits, target, clamp_eps=0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    small = (torch.randn(1, 2, 4, 4, dtype=torch.float64)).requires_grad_(True)
    tgt = make_target()[:1, :2, :4, :4].clone()
    tgt[0, 0, 1, 1] = 1
    assert torch.autograd.gradcheck(lambda x: heatmap_focal_loss(x, tgt, clamp_eps=0), (small, ))


def compact_of(dense):
    """The CompactHeatmap of a dense (B, C, H, W) target: its planes that are not all zero."""
    from mmkp.models.utils import CompactHeatmap
    flat = dense.reshape(-1, *dense.shape[-2:])
    planes = flat.flatten(1).abs().sum(1).nonzero().flatten()
    return CompactHeatmap(flat[planes], planes, tuple(dense.shape))


def sparse_target(num_classes=8, seed=0, dtype=torch.float64):
    """Gaussian-like targets in 3 of the 2 x ``num_classes`` planes, with positives."""
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(2, num_classes, 16, 16, dtype=dtype)
    for b, c in ((0, 1), (0, 5), (1, 2)):
        target[b, c] = torch.rand(16, 16, generator=g, dtype=dtype) * 0.9
        target[b, c, 3 + c, 4] = 1
    return target


@pytest.mark.parametrize('clamp_eps', [1e-4, 0.0])
@pytest.mark.parametrize('occupied', ['few', 'most'])
def test_compact_target_gives_the_dense_loss_and_gradient(clamp_eps, occupied):
    """Few occupied planes take the compact path, most of them the dense fallback: both equal the dense loss."""
    target = sparse_target() if occupied == 'few' else make_target()
    compact = compact_of(target)
    assert (2 * compact.planes.numel() <= target.shape[0] * target.shape[1]) == (occupied == 'few')
    logits = (torch.randn(target.shape, dtype=torch.float64) * 4).requires_grad_(True)
    dense_loss = heatmap_focal_loss(logits, target, clamp_eps=clamp_eps)
    dense_grad, = torch.autograd.grad(dense_loss, logits)
    compact_loss = heatmap_focal_loss(logits, compact, clamp_eps=clamp_eps)
    compact_grad, = torch.autograd.grad(compact_loss, logits)
    assert compact_loss.item() == pytest.approx(dense_loss.item(), rel=1e-12)
    torch.testing.assert_close(compact_grad, dense_grad, rtol=1e-10, atol=1e-14)
    if clamp_eps == 1e-4:
        assert compact_loss.item() == pytest.approx(original_focal_loss(logits.detach(), target).item(), rel=1e-9)


def test_compact_target_in_float32_with_weight_and_avg_factor():
    target = sparse_target(dtype=torch.float32)
    compact = compact_of(target)
    logits = torch.randn(target.shape)
    weight = torch.ones_like(target)
    weight[1] = 0
    loss = HeatmapFocalLoss(loss_weight=3.0)
    assert loss(logits, compact, weight=weight).item() == pytest.approx(
        loss(logits, target, weight=weight).item(), rel=1e-6)
    assert loss(logits, compact, avg_factor=7.0).item() == pytest.approx(
        loss(logits, target, avg_factor=7.0).item(), rel=1e-5)
    assert HeatmapFocalLoss.supports_compact_target


def test_compact_target_without_planes_is_the_background_sum():
    from mmkp.models.utils import CompactHeatmap
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    empty = CompactHeatmap(torch.zeros(0, 4, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.long), (2, 3, 4, 4))
    expect = -(logits.sigmoid().pow(2) * torch.nn.functional.logsigmoid(-logits)).sum()
    assert heatmap_focal_loss(logits, empty, clamp_eps=0).item() == pytest.approx(expect.item(), rel=1e-12)


def test_compact_target_of_another_shape_is_an_error():
    target = compact_of(sparse_target())
    with pytest.raises(ValueError, match=r'compact target of dense shape \(2, 8, 16, 16\)'):
        heatmap_focal_loss(torch.randn(2, 8, 16, 15), target)
