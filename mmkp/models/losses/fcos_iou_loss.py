"""IoU / GIoU loss of the original FCOS with +1 smoothing (tianzhi0549/FCOS@a773f12 fcos_core/layers/iou_loss.py)."""
from typing import Optional

import torch
from mmdet.models.losses.utils import weighted_loss
from torch import Tensor, nn

from mmkp.registry import MODELS

LOSS_TYPES = ('iou', 'linear_iou', 'giou')


@weighted_loss
def fcos_iou_loss(pred: Tensor, target: Tensor, loss_type: str = 'iou', smooth: float = 1.0,
                  enclose_eps: float = 1e-7) -> Tensor:
    """Element-wise IoU loss of aligned boxes, as ``IOULoss.forward`` of the original's ``iou_loss.py``.

    With I the intersection, U the union and C the area of the smallest enclosing box::

        iou  = (I + smooth) / (U + smooth)
        giou = iou - (C + enclose_eps - U) / (C + enclose_eps)
        loss = -log(iou) ('iou'),  1 - iou ('linear_iou'),  1 - giou ('giou')

    The original works on (l, t, r, b) distances from a shared point; on boxes that contain a common point (every
    FCOS prediction and target contain their point) the box formulas below give the same numbers, and for boxes
    placed at the origin, (-l, -t, r, b), bit-identical ones. ``smooth`` acts in the units of the boxes: input
    pixels, or strides with ``norm_on_bbox`` (the original applies it after ``NORM_REG_TARGETS`` too).

    Args:
        pred (Tensor): (n, 4) predicted boxes (x1, y1, x2, y2).
        target (Tensor): (n, 4) target boxes (x1, y1, x2, y2).
        loss_type (str): ``'iou'`` (original ``IOU_LOSS_TYPE`` default), ``'linear_iou'`` or ``'giou'`` (imprv).
            Defaults to ``'iou'``.
        smooth (float): added to I and U; 1 in the original, 0 for the plain IoU (mmdet's ``IoULoss`` /
            ``GIoULoss`` also guard with eps 1e-6). Defaults to 1.
        enclose_eps (float): added to the enclosing area C. Defaults to 1e-7 (original).

    Returns:
        Tensor: (n,) losses.
    """
    pred_w, pred_h = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    target_w, target_h = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    target_area = target_w * target_h
    pred_area = pred_w * pred_h
    w_intersect = (torch.minimum(pred[:, 2], target[:, 2]) - torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
    h_intersect = (torch.minimum(pred[:, 3], target[:, 3]) - torch.maximum(pred[:, 1], target[:, 1])).clamp(min=0)
    area_intersect = w_intersect * h_intersect
    area_union = target_area + pred_area - area_intersect
    ious = (area_intersect + smooth) / (area_union + smooth)
    if loss_type == 'iou':
        return -torch.log(ious)
    if loss_type == 'linear_iou':
        return 1 - ious
    g_w_intersect = torch.maximum(pred[:, 2], target[:, 2]) - torch.minimum(pred[:, 0], target[:, 0])
    g_h_intersect = torch.maximum(pred[:, 3], target[:, 3]) - torch.minimum(pred[:, 1], target[:, 1])
    ac_union = g_w_intersect * g_h_intersect + enclose_eps
    gious = ious - (ac_union - area_union) / ac_union
    return 1 - gious


@MODELS.register_module()
class FCOSIoULoss(nn.Module):
    """IoU / linear IoU / GIoU loss of the original FCOS on (x1, y1, x2, y2) boxes, see :func:`fcos_iou_loss`.

    The paper configs use it with ``smooth=1`` (faithful: tianzhi0549/FCOS@a773f12 ``fcos_core/layers/iou_loss.py``
    adds 1 to the intersection and the union, and ``fcos_core/modeling/rpn/fcos/loss.py`` applies it to the
    stride-unit distances when ``NORM_REG_TARGETS`` is on). mmdet's
    ``IoULoss`` (``-log(iou)``, no smoothing, IoU clamped at 1e-6) and ``GIoULoss`` are drop-in alternatives in a
    config: same interface. The original's reduction is a plain sum of ``loss * weight`` that the caller divides by
    the sum of the center-ness targets, which is ``reduction='mean'`` with ``avg_factor`` here.

    Args:
        loss_type (str): ``'iou'``, ``'linear_iou'`` or ``'giou'``. Defaults to ``'iou'``.
        smooth (float): +smooth on intersection and union. Defaults to 1 (original).
        enclose_eps (float): eps on the enclosing area of GIoU. Defaults to 1e-7 (original).
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): multiplier of the loss. Defaults to 1.

    Raises:
        ValueError: on an unknown ``loss_type`` or a negative ``smooth``.
    """

    def __init__(self,
                 loss_type: str = 'iou',
                 smooth: float = 1.0,
                 enclose_eps: float = 1e-7,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
        if smooth < 0:
            raise ValueError(f'smooth must be >= 0, got {smooth}')
        if loss_type == 'iou' and smooth == 0:
            raise ValueError("loss_type='iou' with smooth=0 takes log(0) on disjoint boxes: use smooth > 0 "
                             "or mmdet's IoULoss (which clamps the IoU)")
        self.loss_type = loss_type
        self.smooth = float(smooth)
        self.enclose_eps = float(enclose_eps)
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Loss of aligned boxes.

        Args:
            pred (Tensor): (n, 4) predicted boxes (x1, y1, x2, y2).
            target (Tensor): (n, 4) target boxes.
            weight (Tensor, optional): (n,) per-box weight (FCOS: the center-ness target). Defaults to None.
            avg_factor (float, optional): divisor of the weighted sum with ``'mean'`` (FCOS: the sum of the
                center-ness targets). Defaults to None.
            reduction_override (str, optional): overrides ``reduction``. Defaults to None.

        Returns:
            Tensor: the loss, scalar unless the reduction is ``'none'``.
        """
        assert reduction_override in (None, 'none', 'mean', 'sum')
        reduction = reduction_override if reduction_override else self.reduction
        if pred.shape != target.shape or pred.shape[-1:] != (4, ):
            raise ValueError(f'pred and target must both be (n, 4) boxes, got {tuple(pred.shape)} and '
                             f'{tuple(target.shape)}')
        if weight is not None and weight.dim() > 1:
            weight = weight.reshape(-1)
        return self.loss_weight * fcos_iou_loss(
            pred,
            target,
            weight,
            loss_type=self.loss_type,
            smooth=self.smooth,
            enclose_eps=self.enclose_eps,
            reduction=reduction,
            avg_factor=avg_factor)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(loss_type={self.loss_type!r}, smooth={self.smooth}, '
                f'reduction={self.reduction!r}, loss_weight={self.loss_weight})')
