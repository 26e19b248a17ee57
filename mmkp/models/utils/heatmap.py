"""Peak extraction, top-K and gathering on keypoint heatmaps, and the map back to original-image pixels.

Shared by every decoder (corner pairing, center decoding, the triplet center check).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def local_maximum(heat: Tensor, kernel: int = 3) -> Tensor:
    """Keep the pixels that are the maximum of their ``kernel`` x ``kernel`` window, zero the rest.

    The originals' "NMS" on heatmaps (``_nms``: ``hmax = max_pool2d(heat, k, 1, (k - 1) // 2)``, keep where
    ``hmax == heat``); ties inside a window all survive.

    Args:
        heat (Tensor): (B, C, H, W) scores (after sigmoid).
        kernel (int): odd window size. Defaults to 3.

    Returns:
        Tensor: (B, C, H, W).
    """
    if kernel % 2 != 1:
        raise ValueError(f'local maximum kernel must be odd, got {kernel}')
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    return heat * (hmax == heat).to(heat.dtype)


def topk_heatmap(heat: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Top ``k`` scores over all classes and pixels of each image jointly.

    Equal to the objects-as-points per-class top-K followed by a global top-K, and to CornerNet's ``_topk``.

    Args:
        heat (Tensor): (B, C, H, W).
        k (int): number of peaks; clipped to C * H * W.

    Returns:
        tuple: ``scores`` (B, k), ``index`` (B, k) flat pixel index ``y * W + x``, ``labels`` (B, k),
        ``ys`` (B, k) and ``xs`` (B, k) integer cells as float.
    """
    batch, num_classes, height, width = heat.shape
    k = min(k, num_classes * height * width)
    scores, flat = heat.reshape(batch, -1).topk(k)
    labels = torch.div(flat, height * width, rounding_mode='floor')
    index = flat - labels * height * width
    ys = torch.div(index, width, rounding_mode='floor')
    xs = index - ys * width
    return scores, index, labels, ys.to(heat.dtype), xs.to(heat.dtype)


def gather_feat(feat: Tensor, index: Tensor) -> Tensor:
    """Values of a dense map at flat pixel indices.

    Args:
        feat (Tensor): (B, C, H, W).
        index (Tensor): int64 (B, K) flat indices ``y * W + x``.

    Returns:
        Tensor: (B, K, C).
    """
    batch, channels = feat.shape[:2]
    flat = feat.reshape(batch, channels, -1)
    return flat.gather(2, index.unsqueeze(1).expand(batch, channels, index.shape[1])).transpose(1, 2)


def feat_to_input_ratio(feat_shape: Tuple[int, int], img_meta: dict,
                        ratio: Optional[Tuple[float, float]] = None) -> Tuple[float, float]:
    """(x, y) scale from feature cells to input pixels: 1 / ratio, or batch input size / feature size.

    The batch input size is ``batch_input_shape`` (set by ``DetDataPreprocessor``), else ``pad_shape``, else
    ``img_shape``.
    """
    if ratio is not None:
        return 1.0 / ratio[0], 1.0 / ratio[1]
    in_shape = img_meta.get('batch_input_shape', img_meta.get('pad_shape', img_meta.get('img_shape')))
    return in_shape[1] / feat_shape[1], in_shape[0] / feat_shape[0]


def boxes_to_original(bboxes: Tensor,
                      batch_img_metas: List[dict],
                      rescale: bool = True,
                      clip: bool = False) -> Tensor:
    """Map boxes from pixels of the network input to pixels of the original image.

    Works with any test pipeline: the offset of a crop-pad transform (``border`` = [top, bottom, left, right] as
    written by mmdet's ``RandomCenterCropPad``; absent for ``Resize`` + ``Pad``, whose padding is bottom-right) is
    subtracted, then, when ``rescale``, the boxes are divided by ``scale_factor`` (w, h) when present.

    Args:
        bboxes (Tensor): (B, K, 4) as (x1, y1, x2, y2) in input pixels.
        batch_img_metas (list[dict]): B metas.
        rescale (bool): map to the original image (True) or stay in the resized image. Defaults to True.
        clip (bool): clip to the image (``ori_shape`` when rescaled, else ``img_shape``). Defaults to False.

    Returns:
        Tensor: (B, K, 4).
    """
    shift = bboxes.new_zeros((len(batch_img_metas), 1, 4))
    scale = bboxes.new_ones((len(batch_img_metas), 1, 4))
    limit = bboxes.new_zeros((len(batch_img_metas), 1, 4))
    for i, meta in enumerate(batch_img_metas):  # per image, not per box
        if meta.get('border') is not None:
            top, _, left, _ = [float(v) for v in meta['border'][:4]]
            shift[i, 0] = bboxes.new_tensor([left, top, left, top])
        if rescale and meta.get('scale_factor') is not None:
            sx, sy = [float(v) for v in meta['scale_factor'][:2]]
            scale[i, 0] = bboxes.new_tensor([sx, sy, sx, sy])
        shape = meta['ori_shape'] if rescale else meta['img_shape']
        limit[i, 0] = bboxes.new_tensor([shape[1], shape[0], shape[1], shape[0]])
    out = (bboxes - shift) / scale
    if clip:
        out = torch.minimum(out.clamp(min=0), limit)
    return out
