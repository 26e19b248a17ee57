"""Soft-NMS with box merging (CornerNet-Lite ``soft_nms_merge``) and the CornerNet post-processing of detections.

From princeton-vl/CornerNet-Lite@6a54505 ``core/external/nms.pyx::soft_nms_merge`` and
``core/test/cornernet.py::cornernet_inference``.
"""
import copy
from typing import Optional, Tuple

import torch
from mmcv.ops import batched_nms
from mmengine.structures import InstanceData
from torch import Tensor

SOFT_NMS_METHODS = ('naive', 'linear', 'gaussian')


def batched_nms_any_dtype(bboxes: Tensor, scores: Tensor, labels: Tensor, nms_cfg: dict) -> Tuple[Tensor, Tensor]:
    """mmcv's class-aware ``batched_nms`` for boxes and scores of any floating dtype.

    mmcv's compiled ``soft_nms`` (and its ``nms`` on some builds) accepts float32 only: maps decoded in float16
    (mixed-precision inference) or float64 stop there with ``expected scalar type Float``. The boxes and scores are
    handed to mmcv as float32 copies; what comes back is in the inputs' dtype.

    Args:
        bboxes (Tensor): (N, 4) boxes, any floating dtype.
        scores (Tensor): (N, ) scores, same dtype as ``bboxes``.
        labels (Tensor): (N, ) class indices.
        nms_cfg (dict): mmcv ``batched_nms`` config (``type`` ``nms`` / ``soft_nms``, ``iou_threshold``, ...).

    Returns:
        tuple[Tensor, Tensor]: ``scores`` (K, ) of the kept boxes after (soft-)NMS, in ``scores``' dtype, and
        ``keep`` (K, ) their indices into the inputs, best first.
    """
    dets, keep = batched_nms(bboxes.float(), scores.float(), labels, copy.deepcopy(dict(nms_cfg)))
    return dets[:, -1].to(scores.dtype), keep


def _pairwise_iou(rows: Tensor, cols: Tensor, offset: int) -> Tensor:
    """IoU of (R, 4) against (N, 4) boxes with mmcv's ``offset`` convention (area = (w + offset) (h + offset))."""
    area_r = (rows[:, 2] - rows[:, 0] + offset) * (rows[:, 3] - rows[:, 1] + offset)
    area_c = (cols[:, 2] - cols[:, 0] + offset) * (cols[:, 3] - cols[:, 1] + offset)
    w = (torch.minimum(rows[:, None, 2], cols[None, :, 2]) - torch.maximum(rows[:, None, 0], cols[None, :, 0]) +
         offset).clamp(min=0)
    h = (torch.minimum(rows[:, None, 3], cols[None, :, 3]) - torch.maximum(rows[:, None, 1], cols[None, :, 1]) +
         offset).clamp(min=0)
    inter = w * h
    return inter / (area_r[:, None] + area_c[None, :] - inter)


def _soft_weight(iou: Tensor, method: str, iou_threshold: float, sigma: float) -> Tensor:
    """Score multiplier of a box overlapping a selected one by ``iou`` (mmcv ``softnms_cpu``)."""
    if method == 'gaussian':
        return torch.exp(-(iou * iou) / sigma)
    if method == 'linear':
        return torch.where(iou >= iou_threshold, 1 - iou, torch.ones_like(iou))
    return torch.where(iou >= iou_threshold, torch.zeros_like(iou), torch.ones_like(iou))


def soft_nms_merge(bboxes: Tensor,
                   scores: Tensor,
                   labels: Tensor,
                   tl_scores: Tensor,
                   br_scores: Tensor,
                   iou_threshold: float = 0.5,
                   sigma: float = 0.5,
                   min_score: float = 1e-3,
                   method: str = 'gaussian',
                   offset: int = 1,
                   weight_exp: float = 10.0,
                   max_elements: int = 1 << 22) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-class soft-NMS whose kept boxes absorb the boxes they suppress (CornerNet multi-scale testing).

    The selection is mmcv's ``soft_nms`` (through ``batched_nms``, one call for all classes). The merge of
    CornerNet-Lite ``soft_nms_merge`` is then computed for all kept boxes at once: when kept box
    k is selected, every box j of its class that is still alive (neither selected before nor discarded) and overlaps
    it contributes with mw = (1 - w_kj)^``weight_exp``, w_kj the soft-NMS weight of j under k; the merged box is::

        x1, y1 = sum(x1_j, y1_j * tl_j * mw_kj) / sum(tl_j * mw_kj)
        x2, y2 = sum(x2_j, y2_j * br_j * mw_kj) / sum(br_j * mw_kj)

    over j in {k} (mw = 1) and its contributors, with the corner scores tl_j, br_j of the pairs (a corner whose
    weights sum to 0 -- a score that underflowed to 0 and nothing merged -- keeps its own coordinates, where the
    original divides 0 by 0). "Alive at k's turn"
    follows from the soft-NMS itself: kept boxes are selected in order of decreasing final score, and a box's score at
    the start of turn r is its score times the weights of the boxes selected before; it was discarded once that fell
    below ``min_score``. Done in row blocks of at most ``max_elements`` (kept x all) entries, no loop over boxes.

    Deliberate difference from the Cython original: it swaps only columns 0-4 of its array when it moves the selected
    box to the front, so the corner scores used as merge weights can belong to another box; here each box keeps its
    own. Merging never changes which boxes are kept or their scores.

    Args:
        bboxes (Tensor): (N, 4) boxes (x1, y1, x2, y2), any pixel unit.
        scores (Tensor): (N,) scores.
        labels (Tensor): (N,) classes; boxes of different classes never interact.
        tl_scores (Tensor): (N,) top-left corner scores.
        br_scores (Tensor): (N,) bottom-right corner scores.
        iou_threshold (float): threshold of the linear / naive methods. Defaults to 0.5.
        sigma (float): Gaussian sigma. Defaults to 0.5.
        min_score (float): discard threshold. Defaults to 1e-3.
        method (str): ``'gaussian'``, ``'linear'`` or ``'naive'``. Defaults to ``'gaussian'``.
        offset (int): 1 for the original's "+1" box areas, 0 for continuous. Defaults to 1 (original).
        weight_exp (float): merge exponent. Defaults to 10 (CornerNet multi-scale config).
        max_elements (int): block size bound. Defaults to 2^22.

    Returns:
        tuple[Tensor, Tensor, Tensor]: merged boxes (K, 4), soft-NMS scores (K,) descending, and ``keep`` (K,)
        indices into the inputs.

    Raises:
        ValueError: for an unknown ``method`` or shapes that do not match.
    """
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f'soft-NMS method must be one of {SOFT_NMS_METHODS}, got {method!r}')
    num = bboxes.shape[0]
    for name, t in (('scores', scores), ('labels', labels), ('tl_scores', tl_scores), ('br_scores', br_scores)):
        if t.shape != (num, ):
            raise ValueError(f'{name} must have shape ({num},), got {tuple(t.shape)}')
    if num == 0:
        return bboxes.new_zeros((0, 4)), scores.new_zeros((0, )), labels.new_zeros((0, ), dtype=torch.long)
    nms_cfg = dict(
        type='soft_nms', iou_threshold=iou_threshold, sigma=sigma, min_score=min_score, method=method, offset=offset)
    kept_scores, keep = batched_nms_any_dtype(bboxes, scores, labels, nms_cfg)
    # the coordinates mmcv saw (class offsets of batched_nms), so that the weights are the ones it applied
    boxes = bboxes.float()
    shifted = boxes + (labels.to(boxes) * (boxes.max() + 1))[:, None]
    score_now = scores.float().clone()  # score of every box at the start of the current turn
    rank = torch.full((num, ), keep.numel(), dtype=torch.long, device=bboxes.device)
    rank[keep] = torch.arange(keep.numel(), device=bboxes.device)
    tl_w, br_w = tl_scores.float(), br_scores.float()
    merged = []
    block = max(1, max_elements // num)
    for start in range(0, keep.numel(), block):  # blocks of kept boxes bound the memory, not a loop per box
        rows = keep[start:start + block]
        turn = torch.arange(start, start + rows.numel(), device=bboxes.device)
        iou = _pairwise_iou(shifted[rows], shifted, offset)
        same = (labels[rows, None] == labels[None, :]) & (rows[:, None] != torch.arange(num, device=iou.device))
        weight = torch.where(same, _soft_weight(iou, method, iou_threshold, sigma), torch.ones_like(iou))
        # score of each box at the start of each turn in the block: exclusive cumulative product of the weights
        start_scores = score_now * torch.cat([weight.new_ones((1, num)), weight[:-1].cumprod(0)], 0)
        alive = (turn[:, None] < rank[None, :]) & ((turn[:, None] == 0) | (start_scores >= min_score))
        mw = torch.where(alive & same & (iou > 0), (1 - weight).pow(weight_exp), torch.zeros_like(weight))
        mw_tl = mw * tl_w[None, :]
        mw_br = mw * br_w[None, :]
        den_tl = tl_w[rows] + mw_tl.sum(1)
        den_br = br_w[rows] + mw_br.sum(1)
        x1 = (boxes[rows, 0] * tl_w[rows] + mw_tl @ boxes[:, 0]) / den_tl
        y1 = (boxes[rows, 1] * tl_w[rows] + mw_tl @ boxes[:, 1]) / den_tl
        x2 = (boxes[rows, 2] * br_w[rows] + mw_br @ boxes[:, 2]) / den_br
        y2 = (boxes[rows, 3] * br_w[rows] + mw_br @ boxes[:, 3]) / den_br
        # a corner score of exactly 0 (sigmoid underflow) with nothing merged: 0 / 0, keep the box's own corner
        tl_ok, br_ok = (den_tl > 0).unsqueeze(1), (den_br > 0).unsqueeze(1)
        merged.append(
            torch.cat([
                torch.where(tl_ok, torch.stack([x1, y1], -1), boxes[rows, :2]),
                torch.where(br_ok, torch.stack([x2, y2], -1), boxes[rows, 2:])
            ], -1))
        score_now = score_now * weight.prod(0)
    return torch.cat(merged).to(bboxes.dtype), kept_scores, keep


def corner_nms(results: InstanceData, nms_cfg: Optional[dict], max_per_img: int = 100) -> InstanceData:
    """CornerNet's post-processing of decoded pairs: per-class soft-NMS (or soft-NMS merge), then the best ones.

    CornerNet-Lite ``core/test/cornernet.py::cornernet_inference``: per class ``soft_nms`` (or ``soft_nms_merge``
    when ``merge_bbox``), then the top ``max_per_image`` scores across classes. Two deliberate differences, both
    named in the docs of the configs:

    * the original ignores the ``keep`` list that its Cython soft-NMS returns and keeps the whole array, whose tail
      then holds stale "ghost" copies of live boxes; here only the kept boxes survive;
    * the original keeps every box whose score ties the 100th; here exactly ``max_per_img`` are kept.

    Args:
        results (InstanceData): ``bboxes`` (N, 4), ``scores``, ``labels``, and for merging ``tl_scores`` and
            ``br_scores`` (N,).
        nms_cfg (dict, optional): ``dict(type='soft_nms', iou_threshold, sigma, min_score, method, offset)`` (any
            ``batched_nms`` config: ``nms``, ``soft_nms``) or ``dict(type='soft_nms_merge', ..., weight_exp=10)``;
            None skips NMS.
        max_per_img (int): detections kept; <= 0 keeps all. Defaults to 100.

    Returns:
        InstanceData: ``bboxes``, ``scores`` (descending), ``labels`` of the kept detections.

    Raises:
        ValueError: when merging is asked and the corner scores are missing.
    """
    out = InstanceData(bboxes=results.bboxes, scores=results.scores, labels=results.labels)
    if nms_cfg is not None and len(results) > 0:
        cfg = copy.deepcopy(dict(nms_cfg))
        if cfg.get('type') == 'soft_nms_merge':
            if 'tl_scores' not in results or 'br_scores' not in results:
                raise ValueError('soft_nms_merge needs the corner scores: results.tl_scores / results.br_scores')
            cfg.pop('type')
            bboxes, scores, keep = soft_nms_merge(results.bboxes, results.scores, results.labels, results.tl_scores,
                                                  results.br_scores, **cfg)
        else:
            scores, keep = batched_nms_any_dtype(results.bboxes, results.scores, results.labels, cfg)
            bboxes = results.bboxes[keep]
        out = InstanceData(bboxes=bboxes, scores=scores, labels=results.labels[keep])
    else:
        order = torch.argsort(out.scores, descending=True)
        out = out[order]
    if max_per_img > 0 and len(out) > max_per_img:
        out = out[:max_per_img]
    return out
