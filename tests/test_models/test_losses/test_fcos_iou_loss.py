"""FCOSIoULoss against the (l, t, r, b) formulas of fcos_core/layers/iou_loss.py, written out per element."""
import math

import pytest
import torch

from mmkp.models.losses import FCOSIoULoss, fcos_iou_loss
from mmkp.registry import MODELS


def original_iou_loss(pred, target, weight, loss_type):
    """``IOULoss.forward`` of the original on (l, t, r, b), returning sum(loss * weight)."""
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    target_area = (tl + tr) * (tt + tb)
    pred_area = (pl + pr) * (pt + pb)
    w_i = torch.min(pl, tl) + torch.min(pr, tr)
    h_i = torch.min(pb, tb) + torch.min(pt, tt)
    g_w = torch.max(pl, tl) + torch.max(pr, tr)
    g_h = torch.max(pb, tb) + torch.max(pt, tt)
    ac_union = g_w * g_h + 1e-7
    area_i = w_i * h_i
    area_u = target_area + pred_area - area_i
    ious = (area_i + 1.0) / (area_u + 1.0)
    gious = ious - (ac_union - area_u) / ac_union
    losses = {'iou': -torch.log(ious), 'linear_iou': 1 - ious, 'giou': 1 - gious}[loss_type]
    return (losses * weight).sum()


def at_origin(d):
    return torch.cat([-d[:, :2], d[:, 2:]], 1)


@pytest.mark.parametrize('loss_type', ['iou', 'linear_iou', 'giou'])
def test_matches_the_original_bit_for_bit_on_boxes_at_the_origin(loss_type):
    torch.manual_seed(0)
    pred, target = torch.rand(50, 4) * 20, torch.rand(50, 4) * 20 + 0.1
    weight = torch.rand(50)
    loss = FCOSIoULoss(loss_type=loss_type, reduction='sum')(at_origin(pred), at_origin(target), weight=weight)
    assert torch.equal(loss, original_iou_loss(pred, target, weight, loss_type))
    # boxes around the same point anywhere: equal up to rounding
    shift = torch.tensor([300., 200., 300., 200.])
    moved = FCOSIoULoss(loss_type=loss_type, reduction='sum')(at_origin(pred) + shift, at_origin(target) + shift,
                                                              weight=weight)
    assert torch.allclose(moved, loss, rtol=1e-4)


def test_hand_values_and_normalisation():
    pred = torch.tensor([[0., 0., 2., 2.], [0., 0., 4., 4.]])
    target = torch.tensor([[0., 0., 2., 2.], [2., 2., 6., 6.]])
    # I = 4, U = 4 -> (4 + 1) / (4 + 1) = 1; I = 4, U = 28 -> 5 / 29; C = 36
    iou = FCOSIoULoss(reduction='none')(pred, target)
    assert torch.allclose(iou, torch.tensor([0.0, -math.log(5 / 29)]))
    giou = FCOSIoULoss(loss_type='giou', reduction='none')(pred, target)
    assert torch.allclose(giou, torch.tensor([1 - (1 - 0 / 4), 1 - (5 / 29 - (36 - 28) / 36)]), atol=1e-6)
    plain = FCOSIoULoss(loss_type='linear_iou', smooth=0, reduction='none')(pred, target)
    assert torch.allclose(plain, torch.tensor([0.0, 1 - 4 / 28]))
    weight = torch.tensor([0.5, 2.0])
    mean = FCOSIoULoss(loss_weight=3.0)(pred, target, weight=weight, avg_factor=4.0)
    assert math.isclose(float(mean), 3.0 * (2.0 * -math.log(5 / 29)) / 4.0, rel_tol=1e-6)


def test_gradients_match_finite_differences():
    torch.manual_seed(1)
    pred = (torch.rand(6, 4, dtype=torch.float64) * 5 + 0.5).requires_grad_()
    target = torch.rand(6, 4, dtype=torch.float64) * 5 + 0.5
    for loss_type in ('iou', 'giou'):
        assert torch.autograd.gradcheck(
            lambda p: fcos_iou_loss(at_origin(p), at_origin(target), loss_type=loss_type, reduction='sum'),
            (pred, ))
    loss = FCOSIoULoss()(at_origin(pred), at_origin(target))
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_config_and_errors():
    loss = MODELS.build(dict(type='FCOSIoULoss', loss_type='giou', smooth=1.0, loss_weight=2.0))
    # the built loss computes 2 * (1 - giou): I = 4, U = 28, C = 36 (see test_hand_values_and_normalisation)
    value = loss(torch.tensor([[0., 0., 4., 4.]]), torch.tensor([[2., 2., 6., 6.]]))
    assert math.isclose(float(value), 2.0 * (1 - (5 / 29 - (36 - 28) / 36)), rel_tol=1e-6)
    with pytest.raises(ValueError, match='loss_type'):
        FCOSIoULoss(loss_type='diou')
    with pytest.raises(ValueError, match='smooth'):
        FCOSIoULoss(smooth=-1)
    with pytest.raises(ValueError, match='smooth'):
        FCOSIoULoss(loss_type='iou', smooth=0)
    with pytest.raises(ValueError, match='pred and target'):
        FCOSIoULoss()(torch.zeros(3, 4), torch.zeros(2, 4))
