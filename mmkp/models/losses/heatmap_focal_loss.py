"""Gaussian (penalty-reduced) focal loss on keypoint heatmaps, from logits."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkp.registry import MODELS
from ..utils.gaussian import COMPACT_MAX_OCCUPANCY, CompactHeatmap


def _probability_terms(logits: Tensor, clamp_eps: float) -> tuple:
    """p, 1 - p, log p and log(1 - p) of ``logits``, with the originals' clamp of p or exactly."""
    if clamp_eps > 0:
        prob = torch.sigmoid(logits).clamp(clamp_eps, 1 - clamp_eps)
        one_minus_p = 1 - prob
        return prob, one_minus_p, torch.log(prob), torch.log(one_minus_p)
    return torch.sigmoid(logits), torch.sigmoid(-logits), F.logsigmoid(logits), F.logsigmoid(-logits)


def _background_term(logits: Tensor, alpha: float, clamp_eps: float) -> Tensor:
    """The y = 0 term p^alpha log(1 - p), computed as :func:`_probability_terms` computes p and log(1 - p) (without
    the log p and 1 - p a whole map does not need)."""
    if clamp_eps > 0:
        prob = torch.sigmoid(logits).clamp(clamp_eps, 1 - clamp_eps)
        return prob.pow(alpha) * torch.log(1 - prob)
    return torch.sigmoid(logits).pow(alpha) * F.logsigmoid(-logits)


def heatmap_focal_loss(logits: Tensor,
                       target: Union[Tensor, CompactHeatmap],
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

    A :class:`CompactHeatmap` target (what :class:`GaussianHeatmapAssigner` returns) gives the same loss without a
    dense target: every pixel gets the y = 0 term p^alpha log(1 - p), and the occupied planes add the difference
    between their term and that one. Only the floating-point summation order differs from the dense target. The
    occupied planes are computed twice that way, so when more than half of the planes are occupied
    (:data:`mmkp.models.utils.gaussian.COMPACT_MAX_OCCUPANCY`), or with a ``weight``, the target is made dense
    first, which is then cheaper.

    Args:
        logits (Tensor): raw heatmap predictions, any shape, e.g. (B, C, H, W); (B, C, H, W) with a compact target.
        target (Tensor | CompactHeatmap): Gaussian targets in [0, 1], same shape as ``logits`` (or compact, of that
            dense shape); positives are exactly 1.
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

    Raises:
        ValueError: when a compact target's dense shape differs from the shape of ``logits``.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision is computed in float32
    logits = logits.to(dtype)
    if isinstance(target, CompactHeatmap):
        if tuple(logits.shape) != tuple(target.shape):
            raise ValueError(f'heatmap logits of shape {tuple(logits.shape)} and a compact target of dense shape '
                             f'{tuple(target.shape)} differ')
        if weight is None and target.occupancy <= COMPACT_MAX_OCCUPANCY:
            return _compact_focal_loss(logits, target, alpha, beta, clamp_eps, avg_factor)
        target = target.dense()
    target = target.to(dtype)
    pos = target.eq(1)
    prob, one_minus_p, log_p, log_1mp = _probability_terms(logits, clamp_eps)
    pos_term = one_minus_p.pow(alpha) * log_p
    neg_term = (1 - target).pow(beta) * prob.pow(alpha) * log_1mp
    loss = torch.where(pos, pos_term, neg_term)
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        avg_factor = pos.sum().clamp(min=1)
    return -loss.sum() / avg_factor


def _compact_focal_loss(logits: Tensor, target: CompactHeatmap, alpha: float, beta: float, clamp_eps: float,
                        avg_factor: Optional[float]) -> Tensor:
    """:func:`heatmap_focal_loss` of (B, C, H, W) ``logits`` against a compact target (float32 or wider logits).

    The occupied planes' logits are gathered once (their backward is one index-add into the logits' gradient); the
    y = 0 term of those planes is recomputed from them with the same operations as on the whole map.
    """
    flat = logits.reshape(-1, *logits.shape[-2:])
    background = _background_term(flat, alpha, clamp_eps)  # every pixel
    occupied_logits = flat[target.planes]
    occupied = _background_term(occupied_logits, alpha, clamp_eps)
    _, one_minus_p, log_p, _ = _probability_terms(occupied_logits, clamp_eps)
    values = target.values.to(logits.dtype)
    pos = values.eq(1)
    correction = torch.where(pos, one_minus_p.pow(alpha) * log_p - occupied, ((1 - values).pow(beta) - 1) * occupied)
    if avg_factor is None:
        avg_factor = pos.sum().clamp(min=1)
    return -(background.sum() + correction.sum()) / avg_factor


@MODELS.register_module()
class HeatmapFocalLoss(nn.Module):
    """Module form of :func:`heatmap_focal_loss` (logits in).

    Unlike mmdet's ``GaussianFocalLoss``, which takes probabilities and leaves the sigmoid to the head, this takes
    logits, so that the log terms are computed stably, and carries the originals' probability clamp as an option.
    It takes dense targets and the :class:`CompactHeatmap` targets of :class:`GaussianHeatmapAssigner`
    (``supports_compact_target``; the heads densify targets for a loss without that attribute).

    Args:
        alpha (float): focusing exponent. Defaults to 2.
        beta (float): penalty-reduction exponent. Defaults to 4.
        clamp_eps (float): probability clamp of the originals; 0 for exact logs. Defaults to 1e-4.
        loss_weight (float): multiplier of the loss. Defaults to 1.
    """

    supports_compact_target = True

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
                target: Union[Tensor, CompactHeatmap],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None) -> Tensor:
        """Loss of ``logits`` against ``target`` (same shape, or compact); see :func:`heatmap_focal_loss`."""
        return self.loss_weight * heatmap_focal_loss(logits, target, self.alpha, self.beta, self.clamp_eps, weight,
                                                     avg_factor)

    def extra_repr(self) -> str:
        return f'alpha={self.alpha}, beta={self.beta}, clamp_eps={self.clamp_eps}, loss_weight={self.loss_weight}'
