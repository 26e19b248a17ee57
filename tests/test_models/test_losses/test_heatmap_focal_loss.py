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
