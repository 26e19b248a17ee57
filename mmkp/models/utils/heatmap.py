"""Peak extraction, top-K and gathering on keypoint heatmaps, and the map from feature cells to original-image pixels.

Shared by every decoder (corner pairing, center decoding, the triplet center check, Saccade's per-crop decoding).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

Ratio = Union[float, Tuple[float, float]]


def to_xy_ratio(ratio: Optional[Ratio], name: str = 'ratio') -> Optional[Tuple[float, float]]:
    """A scalar or (x, y) scale as an (x, y) pair of floats; None stays None.

    Args:
        ratio (float | tuple[float, float], optional): e.g. CornerNet's output / input ratio 128 / 511.
        name (str): the argument's name in the error. Defaults to ``'ratio'``.

    Returns:
        tuple[float, float] | None: (x, y).

    Raises:
        ValueError: when ``ratio`` is a sequence of other than 2 values or not positive.
    """
    if ratio is None:
        return None
    if isinstance(ratio, (tuple, list)):
        if len(ratio) != 2:
            raise ValueError(f'{name} must be a number or an (x, y) pair, got {ratio!r}')
        out = (float(ratio[0]), float(ratio[1]))
    else:
        out = (float(ratio), float(ratio))
    if not (out[0] > 0 and out[1] > 0):
        raise ValueError(f'{name} must be positive, got {ratio!r}')
    return out


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


def check_no_nan(tensor: Tensor, name: str) -> None:
    """Stop decoding on NaN network outputs (broken weights or inputs) instead of ranking or dropping NaN cells.

    ``sigmoid(NaN)`` is NaN, which ``topk`` ranks first and comparisons drop: either way the detections of a broken
    model would look plausible and nothing would say so.

    Args:
        tensor (Tensor): any shape, e.g. (B, C, H, W) heatmap logits.
        name (str): what it is, for the message.

    Raises:
        FloatingPointError: when ``tensor`` holds a NaN; the message gives the count and the shape.
    """
    nan = torch.isnan(tensor)
    if bool(nan.any()):
        raise FloatingPointError(f'{name} hold {int(nan.sum())} NaN values (shape {tuple(tensor.shape)}): the network '
                                 f'produced NaN (broken weights or input); nothing was decoded')


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

    Raises:
        ValueError: an even ``kernel``.
        FloatingPointError: NaN logits (:func:`check_no_nan`).
    """
    if kernel % 2 != 1:
        raise ValueError(f'local maximum kernel must be odd, got {kernel}')
    check_no_nan(logits, 'heatmap logits')
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
    """(x, y) scale from feature cells to input pixels of one image: 1 / ratio, or batch input size / feature size.

    The batch input size is ``batch_input_shape`` (set by ``DetDataPreprocessor``), else ``pad_shape``, else
    ``img_shape``.

    Args:
        feat_shape (tuple[int, int]): (H, W) of the maps.
        img_meta (dict): the image's metas.
        ratio (tuple[float, float], optional): (x, y) output / input scale (CornerNet's 128 / 511). Defaults to None.

    Returns:
        tuple[float, float]: input pixels per feature cell, (x, y).
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


def cells_to_original(bboxes: Tensor,
                      feat_shape: Sequence[int],
                      batch_img_metas: List[dict],
                      ratio: Optional[Tuple[float, float]] = None,
                      rescale: bool = True,
                      clip: bool = False) -> Tensor:
    """Map boxes from feature cells to original-image pixels, each image with its own metas.

    Every decoder ends with this step: cells -> input pixels (:func:`feat_to_input_ratio` of each image: 1 /
    ``ratio``, or batch input size / feature size), then input pixels -> original-image pixels
    (:func:`boxes_to_original`: ``border`` of a crop-pad transform, ``scale_factor``). Points (the triplet centers)
    go through as degenerate boxes (x, y, x, y).

    Args:
        bboxes (Tensor): (B, K, 4) (x1, y1, x2, y2) in feature cells.
        feat_shape (Sequence[int]): (H, W) of the maps the boxes were decoded from.
        batch_img_metas (list[dict]): B metas (``batch_input_shape`` / ``pad_shape`` / ``img_shape``; ``border``,
            ``scale_factor``, ``ori_shape`` when present).
        ratio (tuple[float, float], optional): (x, y) output / input scale; None reads it off the shapes.
            Defaults to None.
        rescale (bool): original-image pixels (True) or resized-image pixels (False). Defaults to True.
        clip (bool): clip to the image. Defaults to False.

    Returns:
        Tensor: (B, K, 4) in pixels of the original image (or of the resized image without ``rescale``).

    Raises:
        ValueError: when the number of metas differs from B.
    """
    if len(batch_img_metas) != bboxes.shape[0]:
        raise ValueError(f'got {len(batch_img_metas)} image metas for a batch of {bboxes.shape[0]}')
    feat_shape = tuple(int(v) for v in feat_shape[-2:])
    scales = bboxes.new_tensor([feat_to_input_ratio(feat_shape, meta, ratio) for meta in batch_img_metas])
    bboxes = bboxes * scales.repeat(1, 2).unsqueeze(1)  # (B, 1, 4): (sx, sy, sx, sy) per image
    return boxes_to_original(bboxes, batch_img_metas, rescale=rescale, clip=clip)


def split_detections(valid: Optional[Tensor], **fields: Tensor) -> List[InstanceData]:
    """Per-image :class:`InstanceData` from batched detections, keeping the entries where ``valid``.

    Args:
        valid (Tensor, optional): bool (B, K); None keeps every entry.
        **fields (Tensor): (B, K, ...) each, e.g. ``bboxes`` (B, K, 4), ``scores`` (B, K), ``labels`` (B, K).

    Returns:
        list[InstanceData]: B results, each with the fields of its valid entries, in their order.
    """
    batch = next(iter(fields.values())).shape[0]
    results = []
    for i in range(batch):  # per image: a variable number of valid entries
        if valid is None:
            results.append(InstanceData(**{name: value[i] for name, value in fields.items()}))
        else:
            results.append(InstanceData(**{name: value[i][valid[i]] for name, value in fields.items()}))
    return results
