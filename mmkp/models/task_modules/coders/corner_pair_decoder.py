"""Decoding of CornerNet corner heatmaps into boxes: peaks, top-K corners per type, all pairs scored and filtered."""
from typing import List, Optional, Tuple, Union

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS
from ...utils.heatmap import boxes_to_original, feat_to_input_ratio, gather_feat, local_maximum, topk_heatmap


def topk_peaks(logits: Tensor, k: int, kernel: int = 3,
               num_candidates: Tuple[int, ...] = (1000, 16000)) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``topk_heatmap(local_maximum(sigmoid(logits), kernel), k)`` without the dense max-pool when possible.

    The dense form (CornerNet-Lite ``core/models/py_utils/utils.py::_nms`` + ``_topk``; mmdet's
    ``get_local_maximum`` + ``get_topk_from_heatmap``) max-pools the whole (B, C, H, W) map, which dominates decoding
    on a CPU. Here the ``n`` largest logits of each image are taken first (sigmoid is increasing, so they are the
    ``n`` largest scores); each is a peak iff no score in its ``kernel`` x ``kernel`` window (borders excluded, as the
    max-pool's -inf padding) is larger -- the dense rule ``maxpool(heat) == heat``, evaluated on sigmoid scores, so
    plateaus count as in the original. If every image has at least ``k`` peaks among its candidates, the first ``k``
    are exactly the dense result (up to the order of equal scores); otherwise the next, larger ``n`` of
    ``num_candidates`` is tried, and in the end the dense computation.

    Args:
        logits (Tensor): (B, C, H, W) raw heatmap.
        k (int): peaks per image; clipped to C * H * W.
        kernel (int): odd window. Defaults to 3.
        num_candidates (tuple[int]): candidate counts to try before the dense path. Defaults to (1000, 16000).

    Returns:
        tuple: ``scores`` (B, k) sigmoid scores sorted descending, ``index`` (B, k) flat pixel index ``y * W + x``,
        ``labels`` (B, k), ``ys`` and ``xs`` (B, k) integer cells as float (as :func:`topk_heatmap`).
    """
    if kernel % 2 != 1:
        raise ValueError(f'local maximum kernel must be odd, got {kernel}')
    batch, num_classes, height, width = logits.shape
    total = num_classes * height * width
    k = min(k, total)
    flat = logits.reshape(batch, -1)
    radius = (kernel - 1) // 2
    delta = torch.arange(-radius, radius + 1, device=logits.device)
    for num in num_candidates:
        num = min(max(num, k), total)
        cand_logit, cand = flat.topk(num)
        labels = torch.div(cand, height * width, rounding_mode='floor')
        pixel = cand - labels * height * width
        ys = torch.div(pixel, width, rounding_mode='floor')
        xs = pixel - ys * width
        ny = ys.unsqueeze(-1).unsqueeze(-1) + delta.view(-1, 1)  # (B, n, kernel, 1)
        nx = xs.unsqueeze(-1).unsqueeze(-1) + delta.view(1, -1)  # (B, n, 1, kernel)
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        n_index = (labels.unsqueeze(-1).unsqueeze(-1) * height + ny.clamp(0, height - 1)) * width + \
            nx.clamp(0, width - 1)
        n_score = flat.gather(1, n_index.reshape(batch, -1)).view(batch, num, kernel, kernel).sigmoid()
        score = cand_logit.sigmoid()
        n_score = torch.where(inside, n_score, torch.full_like(n_score, float('-inf')))
        is_peak = (n_score <= score.view(batch, num, 1, 1)).flatten(2).all(-1)
        if bool((is_peak.sum(1) >= k).all()):
            rank = torch.arange(num, device=logits.device).expand(batch, num)
            first = torch.where(is_peak, rank, rank + num).sort(1)[0][:, :k]
            return (score.gather(1, first), pixel.gather(1, first), labels.gather(1, first),
                    ys.gather(1, first).to(logits.dtype), xs.gather(1, first).to(logits.dtype))
        if num == total:
            break
    return topk_heatmap(local_maximum(logits.sigmoid(), kernel), k)


@TASK_UTILS.register_module()
class CornerPairDecoder:
    """Boxes from top-left / bottom-right corner heatmaps, embeddings and offsets (CornerNet ``_decode``).

    CornerNet-Lite ``core/models/py_utils/utils.py::_decode`` (DETECTORS.md section 2.10), vectorised over the batch:

    1. sigmoid heatmaps, ``local_maximum_kernel`` x ``local_maximum_kernel`` peak extraction, top ``topk`` corners
       per type over all classes and pixels (:func:`topk_peaks`);
    2. corner = integer cell + gathered offset (feature cells);
    3. all ``topk`` x ``topk`` (top-left, bottom-right) pairs scored (s_tl + s_br) / 2, and set to -1 when the classes
       differ, |e_tl - e_br| > ``ae_threshold``, br_x < tl_x or br_y < tl_y (strict: zero width / height kept, as the
       original; ``keep_zero_size=False`` rejects them as mmdet's ``CornerHead`` does);
    4. the top ``num_dets`` pairs; those scored -1 are dropped (the original drops them after rescaling);
    5. cells -> input pixels (batch input size / feature size, or 1 / ``ratio``; 511 / 128 for CornerNet), then to
       original-image pixels through the metas (:func:`mmkp.models.utils.boxes_to_original`: ``border`` of a crop-pad
       transform, ``scale_factor``), clipped to the image when ``clip_border`` (the original clips,
       ``core/test/cornernet.py::rescale_dets_``).

    Args:
        topk (int): corners per type (K). 100 for CornerNet, 20 for CornerNet-Squeeze. Defaults to 100.
        local_maximum_kernel (int): peak window. Defaults to 3.
        ae_threshold (float): maximum embedding distance of a pair. Defaults to 0.5.
        num_dets (int): pairs kept per image before NMS. 1000 for CornerNet, 100 for Squeeze. Defaults to 1000.
        keep_zero_size (bool): keep pairs with br == tl along an axis (the original); False rejects them (mmdet).
            Defaults to True.
        ratio (float | tuple[float, float], optional): output / input scale (x, y); None reads it off the shapes
            (128 / 511 at 511, 160 / 639 at 639, ...). Defaults to None.
        clip_border (bool): clip boxes to the image. Defaults to True (original).
        num_candidates (tuple[int]): see :func:`topk_peaks`. Defaults to (1000, 16000).

    Raises:
        ValueError: for non-positive ``topk`` / ``num_dets`` or an even kernel.
    """

    def __init__(self,
                 topk: int = 100,
                 local_maximum_kernel: int = 3,
                 ae_threshold: float = 0.5,
                 num_dets: int = 1000,
                 keep_zero_size: bool = True,
                 ratio: Optional[Union[float, Tuple[float, float]]] = None,
                 clip_border: bool = True,
                 num_candidates: Tuple[int, ...] = (1000, 16000)) -> None:
        if topk < 1:
            raise ValueError(f'topk must be >= 1, got {topk}')
        if num_dets < 1:
            raise ValueError(f'num_dets must be >= 1, got {num_dets}')
        if local_maximum_kernel % 2 != 1:
            raise ValueError(f'local_maximum_kernel must be odd, got {local_maximum_kernel}')
        self.topk = topk
        self.local_maximum_kernel = local_maximum_kernel
        self.ae_threshold = ae_threshold
        self.num_dets = num_dets
        self.keep_zero_size = keep_zero_size
        if ratio is not None and not isinstance(ratio, (tuple, list)):
            ratio = (float(ratio), float(ratio))
        self.ratio = ratio
        self.clip_border = clip_border
        self.num_candidates = tuple(num_candidates)

    def decode_pairs(self, tl_heat: Tensor, br_heat: Tensor, tl_emb: Tensor, br_emb: Tensor, tl_off: Tensor,
                     br_off: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Steps 1-4 in feature cells, for the whole batch.

        Args:
            tl_heat, br_heat (Tensor): (B, C, H, W) heatmap logits.
            tl_emb, br_emb (Tensor): (B, 1, H, W) embeddings.
            tl_off, br_off (Tensor): (B, 2, H, W) sub-cell offsets (dx, dy) in cells.

        Returns:
            tuple: ``bboxes`` (B, D, 4) (x1, y1, x2, y2) in feature cells, ``scores`` (B, D) sorted descending with
            -1 for rejected pairs, ``labels`` (B, D), ``tl_scores`` and ``br_scores`` (B, D), D = min(num_dets, K^2).
        """
        for name, t in (('tl_heat', tl_heat), ('br_heat', br_heat), ('tl_emb', tl_emb), ('br_emb', br_emb),
                        ('tl_off', tl_off), ('br_off', br_off)):
            if t.dim() != 4:
                raise ValueError(f'{name} must be a (B, C, H, W) map, got shape {tuple(t.shape)}')
        if tl_emb.shape[1] != 1 or br_emb.shape[1] != 1:
            raise ValueError(f'embeddings must have 1 channel, got {tl_emb.shape[1]} and {br_emb.shape[1]}')
        batch = tl_heat.shape[0]
        kernel = self.local_maximum_kernel
        tl_s, tl_ind, tl_lab, tl_y, tl_x = topk_peaks(tl_heat, self.topk, kernel, self.num_candidates)
        br_s, br_ind, br_lab, br_y, br_x = topk_peaks(br_heat, self.topk, kernel, self.num_candidates)
        k = tl_s.shape[1]
        tl_o = gather_feat(tl_off, tl_ind)
        br_o = gather_feat(br_off, br_ind)
        tl_x, tl_y = tl_x + tl_o[..., 0], tl_y + tl_o[..., 1]
        br_x, br_y = br_x + br_o[..., 0], br_y + br_o[..., 1]
        tl_e = gather_feat(tl_emb, tl_ind)[..., 0]
        br_e = gather_feat(br_emb, br_ind)[..., 0]

        # (B, K_tl, K_br) pairs
        scores = (tl_s.unsqueeze(2) + br_s.unsqueeze(1)) / 2
        reject = tl_lab.unsqueeze(2) != br_lab.unsqueeze(1)
        reject |= (tl_e.unsqueeze(2) - br_e.unsqueeze(1)).abs() > self.ae_threshold
        if self.keep_zero_size:
            reject |= br_x.unsqueeze(1) < tl_x.unsqueeze(2)
            reject |= br_y.unsqueeze(1) < tl_y.unsqueeze(2)
        else:
            reject |= br_x.unsqueeze(1) <= tl_x.unsqueeze(2)
            reject |= br_y.unsqueeze(1) <= tl_y.unsqueeze(2)
        scores = scores.masked_fill(reject, -1).view(batch, -1)
        num_dets = min(self.num_dets, k * k)
        scores, pair = scores.topk(num_dets)
        i = torch.div(pair, k, rounding_mode='floor')
        j = pair - i * k
        bboxes = torch.stack([tl_x.gather(1, i), tl_y.gather(1, i), br_x.gather(1, j), br_y.gather(1, j)], -1)
        return bboxes, scores, tl_lab.gather(1, i), tl_s.gather(1, i), br_s.gather(1, j)

    def decode(self,
               tl_heat: Tensor,
               br_heat: Tensor,
               tl_emb: Tensor,
               br_emb: Tensor,
               tl_off: Tensor,
               br_off: Tensor,
               batch_img_metas: List[dict],
               rescale: bool = True) -> List[InstanceData]:
        """Decode a batch into boxes in original-image pixels.

        Args:
            tl_heat, br_heat (Tensor): (B, C, H, W) heatmap logits.
            tl_emb, br_emb (Tensor): (B, 1, H, W) embeddings.
            tl_off, br_off (Tensor): (B, 2, H, W) offsets in cells.
            batch_img_metas (list[dict]): B metas (``batch_input_shape`` or ``pad_shape`` / ``img_shape``;
                ``border``, ``scale_factor``, ``ori_shape`` when present).
            rescale (bool): original-image pixels (True) or resized-image pixels. Defaults to True.

        Returns:
            list[InstanceData]: per image, the valid pairs sorted by score: ``bboxes`` (D_i, 4), ``scores``,
            ``labels``, ``tl_scores``, ``br_scores`` (D_i,).
        """
        if len(batch_img_metas) != tl_heat.shape[0]:
            raise ValueError(f'got {len(batch_img_metas)} image metas for a batch of {tl_heat.shape[0]}')
        bboxes, scores, labels, tl_scores, br_scores = self.decode_pairs(tl_heat, br_heat, tl_emb, br_emb, tl_off,
                                                                         br_off)
        sx, sy = feat_to_input_ratio(tl_heat.shape[-2:], batch_img_metas[0], self.ratio)
        bboxes = bboxes * bboxes.new_tensor([sx, sy, sx, sy])
        bboxes = boxes_to_original(bboxes, batch_img_metas, rescale=rescale, clip=self.clip_border)
        valid = scores > -1
        results = []
        for i in range(len(batch_img_metas)):  # per image: variable number of valid pairs
            keep = valid[i]
            results.append(
                InstanceData(
                    bboxes=bboxes[i][keep],
                    scores=scores[i][keep],
                    labels=labels[i][keep],
                    tl_scores=tl_scores[i][keep],
                    br_scores=br_scores[i][keep]))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(topk={self.topk}, local_maximum_kernel={self.local_maximum_kernel}, '
                f'ae_threshold={self.ae_threshold}, num_dets={self.num_dets}, keep_zero_size={self.keep_zero_size}, '
                f'ratio={self.ratio}, clip_border={self.clip_border})')
