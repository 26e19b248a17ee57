"""Decoding of center heatmaps (CenterNet, objects as points) into boxes."""
from typing import List, Optional, Tuple, Union

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS
from ...utils.heatmap import boxes_to_original, feat_to_input_ratio, gather_feat, local_maximum, topk_heatmap


@TASK_UTILS.register_module()
class CenterHeatmapDecoder:
    """Boxes from a center heatmap, a size map and an offset map (xingyizhou/CenterNet ``ctdet_decode``).

    Steps, vectorised over the batch: sigmoid; ``local_maximum_kernel`` x ``local_maximum_kernel`` max-pool peak
    extraction; top ``topk`` peaks over all classes; box = (x + dx -/+ w / 2, y + dy -/+ h / 2) in feature cells;
    scaled to input pixels (batch input size / feature size, or 1 / ``ratio``); mapped to original-image pixels
    through the metas (:func:`mmkp.models.utils.boxes_to_original`), so any test pipeline works.

    Args:
        topk (int): peaks kept per image. Defaults to 100.
        local_maximum_kernel (int): peak window. Defaults to 3.
        ratio (float | tuple[float, float], optional): output / input scale; None reads it off the shapes.
            Defaults to None.
        clip_border (bool): clip boxes to the image. The original does not. Defaults to False.
    """

    def __init__(self,
                 topk: int = 100,
                 local_maximum_kernel: int = 3,
                 ratio: Optional[Union[float, Tuple[float, float]]] = None,
                 clip_border: bool = False) -> None:
        if topk < 1:
            raise ValueError(f'topk must be >= 1, got {topk}')
        self.topk = topk
        self.local_maximum_kernel = local_maximum_kernel
        if ratio is not None and not isinstance(ratio, (tuple, list)):
            ratio = (float(ratio), float(ratio))
        self.ratio = ratio
        self.clip_border = clip_border

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
        heat = local_maximum(heatmap.sigmoid(), self.local_maximum_kernel)
        scores, index, labels, ys, xs = topk_heatmap(heat, self.topk)
        wh = gather_feat(size, index)
        off = gather_feat(offset, index)
        cx = xs + off[..., 0]
        cy = ys + off[..., 1]
        half_w, half_h = wh[..., 0] / 2, wh[..., 1] / 2
        bboxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
        sx, sy = feat_to_input_ratio(heatmap.shape[-2:], batch_img_metas[0], self.ratio)
        bboxes = bboxes * bboxes.new_tensor([sx, sy, sx, sy])
        bboxes = boxes_to_original(bboxes, batch_img_metas, rescale=rescale, clip=self.clip_border)
        results = []
        for i in range(heatmap.shape[0]):
            results.append(InstanceData(bboxes=bboxes[i], scores=scores[i], labels=labels[i]))
        return results
