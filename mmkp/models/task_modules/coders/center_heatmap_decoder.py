"""Decoding of center heatmaps (CenterNet, objects as points) into boxes."""
from typing import List, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS
from ...utils.heatmap import Ratio, cells_to_original, gather_feat, split_detections, to_xy_ratio, topk_peaks


@TASK_UTILS.register_module()
class CenterHeatmapDecoder:
    """Boxes from a center heatmap, a size map and an offset map (xingyizhou/CenterNet ``ctdet_decode``).

    Steps (xingyizhou/CenterNet@4c50fd3 ``src/lib/models/decode.py::ctdet_decode``), vectorised over the batch:
    sigmoid; ``local_maximum_kernel`` x ``local_maximum_kernel`` peak extraction and the top ``topk`` peaks over all
    classes (:func:`mmkp.models.utils.topk_peaks`, shared with the corner decoder); box = (x + dx -/+ w / 2,
    y + dy -/+ h / 2) in feature cells; mapped to original-image pixels with each image's own metas
    (:func:`mmkp.models.utils.cells_to_original`: batch input size / feature size or 1 / ``ratio``, ``border``,
    ``scale_factor``), so any test pipeline works.

    Args:
        topk (int): peaks kept per image. Defaults to 100.
        local_maximum_kernel (int): peak window. Defaults to 3.
        ratio (float | tuple[float, float], optional): output / input scale; None reads it off the shapes.
            Defaults to None.
        clip_border (bool): clip boxes to the image. The original does not. Defaults to False.
        num_candidates (tuple[int]): candidate counts of the peak search (:func:`topk_peaks`). Defaults to
            (1000, 16000).

    Raises:
        ValueError: for a non-positive ``topk``, an even kernel or a bad ``ratio``.
    """

    def __init__(self,
                 topk: int = 100,
                 local_maximum_kernel: int = 3,
                 ratio: Optional[Ratio] = None,
                 clip_border: bool = False,
                 num_candidates: Tuple[int, ...] = (1000, 16000)) -> None:
        if topk < 1:
            raise ValueError(f'topk must be >= 1, got {topk}')
        if local_maximum_kernel % 2 != 1:
            raise ValueError(f'local_maximum_kernel must be odd, got {local_maximum_kernel}')
        self.topk = topk
        self.local_maximum_kernel = local_maximum_kernel
        self.ratio = to_xy_ratio(ratio)
        self.clip_border = clip_border
        self.num_candidates = tuple(num_candidates)

    def decode(self,
               heatmap: Tensor,
               size: Tensor,
               offset: Tensor,
               batch_img_metas: List[dict],
               rescale: bool = True) -> List[InstanceData]:
        """Decode a batch.

        Args:
            heatmap (Tensor): (B, C, H, W) logits.
            size (Tensor): (B, 2, H, W) box (width, height) in feature cells.
            offset (Tensor): (B, 2, H, W) sub-cell (dx, dy) in feature cells.
            batch_img_metas (list[dict]): B image metas.
            rescale (bool): boxes in original-image pixels (True) or in resized-image pixels. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes`` (K, 4) (x1, y1, x2, y2), ``scores`` (K,) sorted descending,
            ``labels`` (K,), K = min(topk, C * H * W).
        """
        scores, index, labels, ys, xs = topk_peaks(heatmap, self.topk, self.local_maximum_kernel, self.num_candidates)
        wh = gather_feat(size, index)
        off = gather_feat(offset, index)
        cx = xs + off[..., 0]
        cy = ys + off[..., 1]
        half_w, half_h = wh[..., 0] / 2, wh[..., 1] / 2
        bboxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
        bboxes = cells_to_original(bboxes, heatmap.shape[-2:], batch_img_metas, self.ratio, rescale, self.clip_border)
        return split_detections(None, bboxes=bboxes, scores=scores, labels=labels)
