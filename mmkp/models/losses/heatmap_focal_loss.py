"""Gaussian (penalty-reduced) focal loss on keypoint heatmaps, from logits."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkp.registry import MODELS


def heatmap_focal_loss(logits: Tensor,
                       target: Tensor,
                       alpha: float = 2.0,
                       beta: float = 4.0,
                       clamp_eps: float = 1e-4,
                       weight: Optional[Tensor] = None,
                       avg_factor: Optional[float] = None) -> Tensor:
    """Penalty-reduced pixel-wise focal loss of CornerNet (section 3.3), summed and normalised.

    With p = sigmoid(logits) and y = target::

        L = -1/N * [ sum_{y == 1} (1 - p)^alpha log(p) + sum_{y < 1} (1 - y)^beta p^alpha log(1 - p) ]

    N = ``avg_factor``, by default the number of pixels with y == 1 (all classes, all images of the call), at least
    1: the originals divide by N_pos when positive and use the negative sum alone otherwise, which is the same
    (CornerNet-Lite ``core/models/py_utils/losses.py::_focal_loss``, xingyizhou/CenterNet ``_neg_loss``).

    Args:
        logits (Tensor): raw heatmap predictions, any shape, e.g. (B, C, H, W).
        target (Tensor): Gaussian targets in [0, 1], same shape; positives are exactly 1.
        alpha (float): focusing exponent on p. Defaults to 2.
        beta (float): penalty-reduction exponent on (1 - y). Defaults to 4.
        clamp_eps (float): the originals clamp p to [1e-4, 1 - 1e-4] (``_sigmoid``), which bounds the logs and
            zeroes the gradient of saturated pixels. 0 computes the logs exactly with ``logsigmoid`` instead
            (stable for any logit). Defaults to 1e-4 (faithful).
        weight (Tensor, optional): per-pixel weight multiplying both terms, broadcastable to ``logits`` (the
            ignore mask of CornerNet-Saccade, ``_focal_loss_mask``). N still counts all positives. Defaults to None.
        avg_factor (float, optional): the normaliser N. Defaults to None (number of positives, at least 1).

    Returns:
        Tensor: scalar loss.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision is computed in float32
    logits = logits.to(dtype)
    target = target.to(dtype)
    pos = target.eq(1)
    if clamp_eps > 0:
        prob = torch.sigmoid(logits).clamp(clamp_eps, 1 - clamp_eps)
        log_p, log_1mp = torch.log(prob), torch.log(1 - prob)
        one_minus_p = 1 - prob
    else:
        prob = torch.sigmoid(logits)
        log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
        one_minus_p = torch.sigmoid(-logits)
    pos_term = one_minus_p.pow(alpha) * log_p
    neg_term = (1 - target).pow(beta) * prob.pow(alpha) * log_1mp
    loss = torch.where(pos, pos_term, neg_term)
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        avg_factor = pos.sum().clamp(min=1)
    return -loss.sum() / avg_factor


@MODELS.register_module()
class HeatmapFocalLoss(nn.Module):
    """Module form of :func:`heatmap_focal_loss` (logits in).

    Unlike mmdet's ``GaussianFocalLoss``, which takes probabilities and leaves the sigmoid to the head, this takes
    logits, so that the log terms are computed stably, and carries the originals' probability clamp as an option.

    Args:
        alpha (float): focusing exponent. Defaults to 2.
        beta (float): penalty-reduction exponent. Defaults to 4.
        clamp_eps (float): probability clamp of the originals; 0 for exact logs. Defaults to 1e-4.
        loss_weight (float): multiplier of the loss. Defaults to 1.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 4.0, clamp_eps: float = 1e-4, loss_weight: float = 1.0):
        super().__init__()
        if not 0 <= clamp_eps < 0.5:
            raise ValueError(f'clamp_eps must lie in [0, 0.5), got {clamp_eps}')
        self.alpha = alpha
        self.beta = beta
        self.clamp_eps = clamp_eps
        self.loss_weight = loss_weight

    def forward(self,
                logits: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None) -> Tensor:
        """Loss of ``logits`` (any shape) against ``target`` (same shape); see :func:`heatmap_focal_loss`."""
        return self.loss_weight * heatmap_focal_loss(logits, target, self.alpha, self.beta, self.clamp_eps, weight,
                                                     avg_factor)

    def extra_repr(self) -> str:
        return f'alpha={self.alpha}, beta={self.beta}, clamp_eps={self.clamp_eps}, loss_weight={self.loss_weight}'
