"""CornerNet-Saccade's object-centric training crop (CornerNet-Lite ``core/sample/cornernet_saccade.py``)."""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.structures.bbox import HorizontalBoxes

from mmkp.registry import TRANSFORMS

#: ``np.arange(0.5, 1.1, 0.1)`` of ``configs/CornerNet_Saccade.json`` (``rand_scale_min/max/step``): floating point
#: makes it 0.5 ... 1.1, seven values. Used only for images without objects.
SACCADE_RAND_SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)
FLIP_MODES = ('original', 'mmdet')


def reference_scale(long_side: float) -> float:
    """``ref_scale``: rescale the reference object's long side within its own size bucket (input pixels).

    ``m > 96`` -> ``randint(96, 255) / m``; ``32 < m <= 96`` -> ``randint(32, 97) / m``; else ``randint(16, 33) / m``
    (``np.random.randint``, upper bound excluded), princeton-vl/CornerNet-Lite@6a54505
    ``core/sample/cornernet_saccade.py::ref_scale``.
    """
    if long_side > 96:
        return np.random.randint(low=96, high=255) / long_side
    if long_side > 32:
        return np.random.randint(low=32, high=97) / long_side
    return np.random.randint(low=16, high=33) / long_side


@TRANSFORMS.register_module()
class SaccadeObjectCrop(BaseTransform):
    """Object-centric scale crop of CornerNet-Saccade training, with its ignore rule and flip.

    princeton-vl/CornerNet-Lite@6a54505 ``core/sample/cornernet_saccade.py::cornernet_saccade`` (DETECTORS.md 4.3),
    per image, with ``np.random`` draws in the original's order:

    1. boxes clipped to [0, W - 1] x [0, H - 1]; those left without width or height are dropped;
    2. a reference object drawn uniformly among the boxes; the image is rescaled by :func:`reference_scale` of its
       long side (``cv2.resize`` to ``int(h * s)`` x ``int(w * s)``); without boxes (or, with ``rand_crop``, with
       probability 0.3) by a scale drawn from ``rand_scales`` and no reference;
    3. a ``crop_size`` window, zero padded, around a centre that is, with probability 0.5 (``rand_center``), the
       reference's centre +- ``randint(0, 15)`` per axis (uniform in that interval), else a uniform position that
       keeps the reference inside (``x0`` in [max(x2 - w_crop, 0), min(W - w_crop, x1)]), else (no reference) uniform;
       along an axis where the image is not larger than the crop it is centred. The window spans
       ``ctx - w_crop // 2`` to ``ctx + w_crop // 2`` (254 pixels of a 255 crop, as the original's ``crop_image``);
    4. boxes shifted, clipped to the part of the canvas the image covers (``border``), zero-size ones dropped;
    5. horizontal flip with probability ``flip_prob``: ``x' = W - x - 1`` (``flip_mode='original'``) or
       ``x' = W - x`` (``'mmdet'``, as ``RandomFlip``);
    6. an object is a training positive only if ``max(int(y2) - int(y1), int(x2) - int(x1)) >= min_scale`` and its
       clipped area is more than ``min_visible`` of its (rescaled, unclipped) area; every other object gets
       ``gt_ignore_flags = True``, so that it reaches ``batch_gt_instances_ignore``: :class:`SaccadeHead` draws its
       corner Gaussians into the ignore mask and its attention cell as any object's (the original's ``tl_valids`` /
       ``br_valids`` and ``create_attention_mask``). Objects already ignored (COCO crowds) stay ignored.

    Quirk (DETECTORS.md 9.8): ``configs/CornerNet_Saccade.json`` sets ``rand_full_crop``, which no code reads, so
    ``rand_crop`` is False and every image with objects is cropped around one; ``rand_crop=True`` enables the
    intended 30% crops without a reference object. Default False (faithful).

    Required keys: ``img`` (H, W, C), ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags`` (optional).
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``. Added keys:
    ``flip``, ``flip_direction``, ``saccade_ref_index`` (the reference object's row in the output boxes, -1 without
    one or when it was dropped), ``saccade_scale``.

    Args:
        crop_size (tuple[int, int]): (w, h) of the crop. Defaults to (255, 255).
        rand_scales (Sequence[float]): scales of images without a reference. Defaults to
            :data:`SACCADE_RAND_SCALES`.
        rand_center (bool): the 50% crops centred on the reference. Defaults to True.
        rand_crop (bool): see the quirk above. Defaults to False.
        min_scale (int): smallest positive object (long side in crop pixels, integer corners). Defaults to 16.
        min_visible (float): smallest visible area fraction of a positive (strictly more). Defaults to 0.5.
        flip_prob (float): horizontal flip probability. Defaults to 0.5.
        flip_mode (str): ``'original'`` or ``'mmdet'``, see step 5. Defaults to ``'original'``.
        pad_val (float): canvas value. Defaults to 0.

    Raises:
        ValueError: on bad arguments, or results without an (H, W, C) image or with masks.
    """

    def __init__(self,
                 crop_size: Tuple[int, int] = (255, 255),
                 rand_scales: Sequence[float] = SACCADE_RAND_SCALES,
                 rand_center: bool = True,
                 rand_crop: bool = False,
                 min_scale: int = 16,
                 min_visible: float = 0.5,
                 flip_prob: float = 0.5,
                 flip_mode: str = 'original',
                 pad_val: float = 0.0) -> None:
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f'crop_size must be (w, h) with positive values, got {crop_size}')
        if len(rand_scales) == 0 or min(rand_scales) <= 0:
            raise ValueError(f'rand_scales must be positive scales, got {rand_scales}')
        if flip_mode not in FLIP_MODES:
            raise ValueError(f'flip_mode must be one of {FLIP_MODES}, got {flip_mode!r}')
        if not 0 <= flip_prob <= 1:
            raise ValueError(f'flip_prob must lie in [0, 1], got {flip_prob}')
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.rand_scales = tuple(float(s) for s in rand_scales)
        self.rand_center = bool(rand_center)
        self.rand_crop = bool(rand_crop)
        self.min_scale = int(min_scale)
        self.min_visible = float(min_visible)
        self.flip_prob = float(flip_prob)
        self.flip_mode = flip_mode
        self.pad_val = pad_val

    @staticmethod
    def _crop_center(size: int, crop: int, ref: Optional[np.ndarray], centered: bool) -> int:
        """Centre of the window along one axis (``crop_image_dets``); ``ref`` = (lo, hi) of the reference."""
        if size <= crop:
            return size // 2
        if ref is None or not centered:
            lo = max(ref[1] - crop, 0) if ref is not None else 0
            hi = min(size - crop, ref[0]) if ref is not None else size - crop
            return int(np.random.randint(int(lo), int(hi) + 1)) + crop // 2
        mid = (ref[0] + ref[1]) // 2
        lo = max(mid - np.random.randint(0, 15), 0)
        hi = min(mid + np.random.randint(0, 15), size - 1)
        return int(np.random.randint(int(lo), int(hi) + 1))

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if img is None or img.ndim != 3:
            raise ValueError(f'{type(self).__name__} needs an (H, W, C) image in results["img"], got '
                             f'{None if img is None else img.shape} (file: {results.get("img_path", "?")})')
        if 'gt_masks' in results or 'gt_seg_map' in results:
            raise ValueError(f'{type(self).__name__} supports boxes only (results has gt_masks / gt_seg_map)')
        height, width = img.shape[:2]
        boxes = results.get('gt_bboxes')
        boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes.numpy().astype(np.float32).reshape(-1, 4)
        labels = results.get('gt_bboxes_labels', np.zeros((len(boxes), ), np.int64))
        ignore = results.get('gt_ignore_flags', np.zeros((len(boxes), ), bool))
        # 1. clip to the image, drop empty boxes
        unclipped = boxes.copy()
        boxes = boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, unclipped, labels, ignore = boxes[keep], unclipped[keep], labels[keep], ignore[keep]
        # 2. reference object and scale
        ref_index = None
        if len(boxes) and not (self.rand_crop and np.random.uniform() > 0.7):
            ref_index = int(np.random.randint(len(boxes)))
            ref = boxes[ref_index]
            scale = reference_scale(max(ref[3] - ref[1], ref[2] - ref[0]))
        else:
            scale = float(np.random.choice(self.rand_scales))
        new_h, new_w = int(height * scale), int(width * scale)
        img = cv2.resize(img, (new_w, new_h))
        if img.ndim == 2:
            img = img[..., None]
        boxes, unclipped = boxes * scale, unclipped * scale
        # 3. the window
        crop_w, crop_h = self.crop_size
        ref = boxes[ref_index] if ref_index is not None else None
        centered = self.rand_center and np.random.uniform() > 0.5
        ctx = self._crop_center(new_w, crop_w, None if ref is None else ref[0::2], centered)
        cty = self._crop_center(new_h, crop_h, None if ref is None else ref[1::2], centered)
        x0, x1 = max(0, ctx - crop_w // 2), min(ctx + crop_w // 2, new_w)
        y0, y1 = max(0, cty - crop_h // 2), min(cty + crop_h // 2, new_h)
        left, right, top, bottom = ctx - x0, x1 - ctx, cty - y0, y1 - cty
        canvas = np.full((crop_h, crop_w, img.shape[2]), self.pad_val, dtype=img.dtype)
        mid_x, mid_y = crop_w // 2, crop_h // 2
        canvas[mid_y - top:mid_y + bottom, mid_x - left:mid_x + right] = img[y0:y1, x0:x1]
        # 4. shift, clip to the covered part of the canvas
        boxes = boxes.copy()
        boxes[:, 0::2] -= ctx - mid_x
        boxes[:, 1::2] -= cty - mid_y
        boxes[:, 0::2] = boxes[:, 0::2].clip(mid_x - left, mid_x + right - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clip(mid_y - top, mid_y + bottom - 1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        kept_rows = np.flatnonzero(keep)
        boxes, unclipped, labels, ignore = boxes[keep], unclipped[keep], labels[keep], ignore[keep]
        if ref_index is not None:
            found = np.flatnonzero(kept_rows == ref_index)
            ref_index = int(found[0]) if len(found) else None
        # 5. flip
        flip = np.random.uniform() > 1 - self.flip_prob if self.flip_prob > 0 else False
        if flip:
            canvas = canvas[:, ::-1].copy()
            shift = 1 if self.flip_mode == 'original' else 0
            boxes[:, [0, 2]] = crop_w - boxes[:, [2, 0]] - shift
        # 6. small or mostly cut objects are ignored
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        full = (unclipped[:, 2] - unclipped[:, 0]) * (unclipped[:, 3] - unclipped[:, 1])
        with np.errstate(divide='ignore', invalid='ignore'):
            visible = area / full > self.min_visible
        int_box = boxes.astype(np.int64)  # int() of non-negative values
        long_side = np.maximum(int_box[:, 3] - int_box[:, 1], int_box[:, 2] - int_box[:, 0])
        ignore = ignore | ~(visible & (long_side >= self.min_scale))

        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]
        results['gt_bboxes'] = HorizontalBoxes(boxes.reshape(-1, 4), dtype=None)
        results['gt_bboxes_labels'] = labels
        results['gt_ignore_flags'] = ignore.astype(bool)
        results['flip'] = bool(flip)
        results['flip_direction'] = 'horizontal' if flip else None
        results['saccade_ref_index'] = -1 if ref_index is None else ref_index
        results['saccade_scale'] = scale
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, rand_scales={self.rand_scales}, '
                f'rand_center={self.rand_center}, rand_crop={self.rand_crop}, min_scale={self.min_scale}, '
                f'min_visible={self.min_visible}, flip_prob={self.flip_prob}, flip_mode={self.flip_mode!r})')
