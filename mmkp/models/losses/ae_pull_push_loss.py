"""Associative-embedding pull / push loss of CornerNet, vectorised over the images and objects of a batch."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkp.registry import MODELS

PUSH_DIAGONALS = ('original', 'exclude')
IMAGE_REDUCTIONS = ('sum', 'mean')


def _as_embedding(emb: Tensor, name: str) -> Tensor:
    """(B, M) or (B, M, 1) -> (B, M)."""
    if emb.dim() == 3 and emb.shape[-1] == 1:
        emb = emb.squeeze(-1)
    if emb.dim() != 2:
        raise ValueError(f'{name} must be (B, M) or (B, M, 1) 1-d embeddings, got shape {tuple(emb.shape)}')
    return emb


def ae_pull_push_loss(tl_emb: Tensor,
                      br_emb: Tensor,
                      mask: Tensor,
                      margin: float = 1.0,
                      eps: float = 1e-4,
                      push_diagonal: str = 'original',
                      image_reduction: str = 'sum') -> Tuple[Tensor, Tensor]:
    """Pull and push losses of 1-d corner embeddings, all images and objects at once (no loop).

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/losses.py::_ae_loss`` (CornerNet paper section 3.3).
    For image i with N objects (``mask``), embeddings t_k (top-left) and b_k (bottom-right) and e_k = (t_k + b_k) / 2:

    * pull_i = sum_k [(t_k - e_k)^2 + (b_k - e_k)^2] / (N + eps);
    * push, ``push_diagonal='original'``: the original's trick over all N^2 pairs including k == j,
      push_i = sum_{j,k} [relu(margin - |e_j - e_k|) - margin / (N + eps)] / (N (N - 1) + eps). The subtracted term
      cancels the diagonal (each worth ``margin``) only up to eps: for N >= 2 it leaves about eps / (N (N - 1)), and
      for N == 1 push_i = (1 - 1 / (1 + eps)) / eps ~= 0.9999 -- a constant (no gradient) per one-object image,
      which the original's reported losses include;
    * push, ``push_diagonal='exclude'``: push_i = sum_{j != k} relu(margin - |e_j - e_k|) / (N (N - 1) + eps), 0 for
      N < 2 (mmdet's ``AssociativeEmbeddingLoss`` with ``eps=0``).

    With ``eps == 0`` a quotient whose denominator is 0 (no object, or N < 2 for the push) counts 0. The per-image
    values are summed over the batch (``image_reduction='sum'``, the original and mmdet, i.e. the loss grows with the
    per-GPU batch) or averaged (``'mean'``).

    Args:
        tl_emb (Tensor): top-left embeddings gathered at the objects' top-left cells, (B, M) or (B, M, 1).
        br_emb (Tensor): bottom-right embeddings, same shape.
        mask (Tensor): bool (B, M), True for real objects (the original's ``tag_masks``).
        margin (float): push margin Delta. Defaults to 1 (the original's fixed value).
        eps (float): the original's 1e-4 in the denominators. Defaults to 1e-4.
        push_diagonal (str): ``'original'`` or ``'exclude'``, see above. Defaults to ``'original'``.
        image_reduction (str): ``'sum'`` or ``'mean'`` over the B images. Defaults to ``'sum'``.

    Returns:
        tuple[Tensor, Tensor]: scalar pull and push losses (unweighted).

    Raises:
        ValueError: on bad shapes or an unknown ``push_diagonal`` / ``image_reduction``.
    """
    if push_diagonal not in PUSH_DIAGONALS:
        raise ValueError(f'push_diagonal must be one of {PUSH_DIAGONALS}, got {push_diagonal!r}')
    if image_reduction not in IMAGE_REDUCTIONS:
        raise ValueError(f'image_reduction must be one of {IMAGE_REDUCTIONS}, got {image_reduction!r}')
    tl_emb = _as_embedding(tl_emb, 'tl_emb')
    br_emb = _as_embedding(br_emb, 'br_emb')
    if tl_emb.shape != br_emb.shape or mask.shape != tl_emb.shape:
        raise ValueError(f'tl_emb {tuple(tl_emb.shape)}, br_emb {tuple(br_emb.shape)} and mask {tuple(mask.shape)} '
                         'must have the same (B, M) shape')
    dtype = torch.promote_types(tl_emb.dtype, torch.float32)
    tl_emb, br_emb = tl_emb.to(dtype), br_emb.to(dtype)
    valid = mask.to(dtype)
    num = valid.sum(1)  # (B,)

    def _divide(numerator: Tensor, denominator: Tensor) -> Tensor:
        if eps > 0:
            return numerator / (denominator + eps)
        safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
        return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))

    mean = (tl_emb + br_emb) / 2
    pull_sq = ((tl_emb - mean).pow(2) + (br_emb - mean).pow(2)) * valid
    pull = _divide(pull_sq.sum(1), num)

    pair_valid = valid.unsqueeze(2) * valid.unsqueeze(1)  # (B, M, M)
    dist = F.relu(margin - (mean.unsqueeze(1) - mean.unsqueeze(2)).abs())
    if push_diagonal == 'original':
        dist = dist - margin / (num + eps).view(-1, 1, 1)
    else:
        eye = torch.eye(dist.shape[1], dtype=torch.bool, device=dist.device)
        pair_valid = pair_valid.masked_fill(eye, 0)
    push = _divide((dist * pair_valid).sum((1, 2)), num * (num - 1))

    if image_reduction == 'sum':
        return pull.sum(), push.sum()
    return pull.mean(), push.mean()


@MODELS.register_module()
class AssociativeEmbeddingPullPushLoss(nn.Module):
    """Module form of :func:`ae_pull_push_loss` with the pull / push weights of CornerNet.

    Unlike mmdet's ``AssociativeEmbeddingLoss`` (a Python loop over images and objects on lists of corner
    coordinates) this takes embeddings already gathered at the objects' corners, (B, M), with a (B, M) mask, and
    computes every image and pair at once. ``eps=0, push_diagonal='exclude'`` reproduces mmdet's numbers; the
    defaults reproduce the original's (``CornerNet_Loss(pull_weight=1e-1, push_weight=1e-1)``).

    Args:
        pull_weight (float): weight of the pull loss. Defaults to 0.1.
        push_weight (float): weight of the push loss. Defaults to 0.1.
        margin (float): push margin. Defaults to 1.
        eps (float): denominator epsilon. Defaults to 1e-4 (original).
        push_diagonal (str): ``'original'`` (the original's all-pairs trick) or ``'exclude'``. Defaults to
            ``'original'``.
        image_reduction (str): ``'sum'`` (original, mmdet) or ``'mean'`` over images. Defaults to ``'sum'``.

    Raises:
        ValueError: on an unknown option value, or negative eps.
    """

    def __init__(self,
                 pull_weight: float = 0.1,
                 push_weight: float = 0.1,
                 margin: float = 1.0,
                 eps: float = 1e-4,
                 push_diagonal: str = 'original',
                 image_reduction: str = 'sum') -> None:
        super().__init__()
        if push_diagonal not in PUSH_DIAGONALS:
            raise ValueError(f'push_diagonal must be one of {PUSH_DIAGONALS}, got {push_diagonal!r}')
        if image_reduction not in IMAGE_REDUCTIONS:
            raise ValueError(f'image_reduction must be one of {IMAGE_REDUCTIONS}, got {image_reduction!r}')
        if eps < 0:
            raise ValueError(f'eps must be >= 0, got {eps}')
        self.pull_weight = pull_weight
        self.push_weight = push_weight
        self.margin = margin
        self.eps = eps
        self.push_diagonal = push_diagonal
        self.image_reduction = image_reduction

    def forward(self, tl_emb: Tensor, br_emb: Tensor, mask: Tensor,
                avg_factor: Optional[float] = None) -> Tuple[Tensor, Tensor]:
        """Weighted pull and push losses.

        Args:
            tl_emb (Tensor): (B, M) or (B, M, 1) top-left embeddings at the objects' corners.
            br_emb (Tensor): same shape, bottom-right.
            mask (Tensor): bool (B, M) real objects.
            avg_factor (float, optional): unused; accepted for mmdet's loss signature.

        Returns:
            tuple[Tensor, Tensor]: ``pull_weight * pull`` and ``push_weight * push``.
        """
        pull, push = ae_pull_push_loss(tl_emb, br_emb, mask, self.margin, self.eps, self.push_diagonal,
                                       self.image_reduction)
        return self.pull_weight * pull, self.push_weight * push

    def extra_repr(self) -> str:
        return (f'pull_weight={self.pull_weight}, push_weight={self.push_weight}, margin={self.margin}, '
                f'eps={self.eps}, push_diagonal={self.push_diagonal!r}, image_reduction={self.image_reduction!r}')
