"""CornerNet's random scale crop (CornerNet-Lite ``core/sample/utils.py::random_crop``)."""
from typing import Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from mmkp.registry import TRANSFORMS

#: ``np.arange(0.6, 1.4, 0.1)`` of the CornerNet configs: 0.6 ... 1.3 (1.4 excluded by ``np.arange``).
CORNERNET_RATIOS = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)


def cornernet_border(border: int, size: int) -> int:
    """``_get_border``: halve ``border`` until the centre range [border, size - border) is not empty.

    Args:
        border (int): the configured border (128).
        size (int): image width or height in pixels.

    Returns:
        int: ``border // i`` for the smallest power of two i with ``size - border // i > border // i``.
    """
    i = 1
    while size - border // i <= border // i:
        i *= 2
    return border // i


@TRANSFORMS.register_module()
class CornerNetRandomCrop(BaseTransform):
    """Random scale crop of CornerNet / CornerNet-Squeeze training, one draw, nothing resampled.

    princeton-vl/CornerNet-Lite@6a54505 ``core/sample/utils.py::random_crop``: s is drawn from ``ratios``; a window of
    ``int(crop_w * s)`` x ``int(crop_h * s)``
    centred on (ctx, cty), drawn uniformly in [bw, W - bw) x [bh, H - bh) with b = :func:`cornernet_border`, is cut
    out of the image and pasted, centre on centre, on a canvas filled with ``pad_val`` (the original: zeros, i.e.
    black before normalisation); boxes are shifted accordingly, clipped to the canvas, and those left without width
    or height dropped. Follow with ``Resize(scale=crop_size, keep_ratio=False)`` as the original's ``_resize_image``.

    mmdet's ``RandomCenterCropPad`` (train mode) is the same crop with three differences, which is why this exists:
    it drops every box whose centre falls outside the window (the original keeps the clipped part of any box), it
    redraws the centre up to 50 times and then the scale until some box centre lies inside (the original takes the
    first draw, empty crops included), and it pads with the mean pixel (the original with zeros; configurable
    there through ``mean``). The random draws are made in the original's order with ``np.random`` (scale, then
    ctx, then cty), so a seeded run reproduces the original's crops.

    Required keys: ``img`` (H, W, C), ``gt_bboxes`` (optional), ``gt_bboxes_labels`` (optional), ``gt_ignore_flags``
    (optional). Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``.

    Args:
        crop_size (tuple[int, int]): (w, h) of the network input before scaling. Defaults to (511, 511).
        ratios (Sequence[float]): scales s. Defaults to 0.6, 0.7, ..., 1.3.
        border (int): the original's ``border``. Defaults to 128.
        pad_val (float): canvas value. Defaults to 0.

    Raises:
        ValueError: on an empty ``ratios``, non-positive ``crop_size``, or results with masks / no image.
    """

    def __init__(self,
                 crop_size: Tuple[int, int] = (511, 511),
                 ratios: Sequence[float] = CORNERNET_RATIOS,
                 border: int = 128,
                 pad_val: float = 0.0) -> None:
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f'crop_size must be (w, h) with positive values, got {crop_size}')
        if len(ratios) == 0 or min(ratios) <= 0:
            raise ValueError(f'ratios must be a non-empty sequence of positive scales, got {ratios}')
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.ratios = tuple(float(r) for r in ratios)
        self.border = int(border)
        self.pad_val = pad_val

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if img is None or img.ndim != 3:
            raise ValueError(f'{type(self).__name__} needs an (H, W, C) image in results["img"], got '
                             f'{None if img is None else img.shape} (file: {results.get("img_path", "?")})')
        if 'gt_masks' in results or 'gt_seg_map' in results:
            raise ValueError(f'{type(self).__name__} supports boxes only (results has gt_masks / gt_seg_map)')
        height, width, channels = img.shape
        scale = np.random.choice(self.ratios)
        crop_w, crop_h = int(self.crop_size[0] * scale), int(self.crop_size[1] * scale)
        w_border = cornernet_border(self.border, width)
        h_border = cornernet_border(self.border, height)
        ctx = np.random.randint(low=w_border, high=width - w_border)
        cty = np.random.randint(low=h_border, high=height - h_border)
        x0, x1 = max(ctx - crop_w // 2, 0), min(ctx + crop_w // 2, width)
        y0, y1 = max(cty - crop_h // 2, 0), min(cty + crop_h // 2, height)
        left, right, top, bottom = ctx - x0, x1 - ctx, cty - y0, y1 - cty
        center_x, center_y = crop_w // 2, crop_h // 2
        canvas = np.full((crop_h, crop_w, channels), self.pad_val, dtype=img.dtype)
        canvas[center_y - top:center_y + bottom, center_x - left:center_x + right] = img[y0:y1, x0:x1]
        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]
        boxes = results.get('gt_bboxes')
        if boxes is not None:
            boxes.translate_([center_x - left - x0, center_y - top - y0])
            boxes.clip_((crop_h, crop_w))
            keep = ((boxes.widths > 0) & (boxes.heights > 0)).numpy()
            results['gt_bboxes'] = boxes[keep]
            for key in ('gt_bboxes_labels', 'gt_ignore_flags'):
                if results.get(key) is not None:
                    results[key] = results[key][keep]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, ratios={self.ratios}, border={self.border}, '
                f'pad_val={self.pad_val})')
