"""Gaussian heatmap targets for keypoint detectors (corners, centers), a whole batch at once."""
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS
from ...utils.gaussian import (COMPACT_MAX_OCCUPANCY, RADIUS_FORMULAS, CompactHeatmap, draw_gaussians,
                               integer_radius, keypoint_grid_position)
from ...utils.heatmap import to_xy_ratio

KEYPOINTS = ('top_left', 'bottom_right', 'center')


@dataclass(eq=False)
class HeatmapTargets:
    """Targets of :class:`GaussianHeatmapAssigner` for a batch of B images with at most M objects each.

    Attributes:
        compact_heatmaps (dict[str, CompactHeatmap]): per keypoint type, the (B, num_classes, H, W) heatmap in
            [0, 1] (exactly 1 at keypoints) stored as its (image, class) planes that hold an object; what the heads
            hand to :func:`mmkp.models.losses.heatmap_focal_loss`. The planes are the same for every keypoint type.
        indices (dict[str, Tensor]): per keypoint type, int64 (B, M), flat cell index ``y * W + x`` for gathering
            embeddings / offsets / sizes from (B, C, H, W) maps; 0 where ``mask`` is False.
        offsets (dict[str, Tensor]): per keypoint type, (B, M, 2), sub-cell offset (dx, dy) in [0, 1) of the
            keypoint from its integer cell, in feature-map cells.
        sizes (Tensor): (B, M, 2), box (width, height) in feature-map cells.
        labels (Tensor): int64 (B, M), class index of each object; -1 where ``mask`` is False.
        mask (Tensor): bool (B, M), True for real objects (padding and boxes dropped as empty are False).
        weights (dict[str, Tensor], optional): per keypoint type, the (B, num_classes, H, W) per-pixel weight of the
            heatmap loss: 0 wherever a Gaussian of an ignored object (``batch_gt_instances_ignore``, drawn in its
            class plane with the same radius and sigma rules as the objects) is positive, 1 elsewhere -- the valid
            masks of CornerNet-Saccade (princeton-vl/CornerNet-Lite@6a54505 ``core/sample/cornernet_saccade.py``,
            ``tl_valids`` / ``br_valids``). None when the batch has no ignored object.
    """
    compact_heatmaps: Dict[str, CompactHeatmap]
    indices: Dict[str, Tensor]
    offsets: Dict[str, Tensor]
    sizes: Tensor
    labels: Tensor
    mask: Tensor
    weights: Optional[Dict[str, Tensor]] = None

    @cached_property
    def heatmaps(self) -> Dict[str, Tensor]:
        """Per keypoint type, the dense (B, num_classes, H, W) heatmap, built on first access and kept."""
        return {name: heat.dense() for name, heat in self.compact_heatmaps.items()}

    def heatmap_for(self, loss: object, name: str) -> Union[CompactHeatmap, Tensor]:
        """The heatmap of keypoint type ``name`` in the form ``loss`` is best given.

        Compact when the loss takes that form (``supports_compact_target``, as
        :class:`mmkp.models.losses.HeatmapFocalLoss`) and at most ``COMPACT_MAX_OCCUPANCY`` of the planes are
        occupied; else the dense heatmap (built once, so that the losses of several stacks share it).
        """
        compact = self.compact_heatmaps[name]
        if self.weights is None and getattr(loss, 'supports_compact_target',
                                            False) and compact.occupancy <= COMPACT_MAX_OCCUPANCY:
            return compact
        return self.heatmaps[name]

    def weight_for(self, name: str) -> Optional[Tensor]:
        """The (B, num_classes, H, W) heatmap-loss weight of keypoint type ``name``, or None without ignores."""
        return None if self.weights is None else self.weights[name]


@TASK_UTILS.register_module()
class GaussianHeatmapAssigner:
    """Gaussian keypoint heatmaps and the regression targets that go with them, vectorised over boxes and images.

    Follows princeton-vl/CornerNet-Lite@6a54505 ``core/sample/cornernet.py`` and ``core/sample/utils.py``,
    Duankaiwen/CenterNet@3ad3a10 ``sample/coco.py`` (keypoint triplets) and xingyizhou/CenterNet@4c50fd3
    ``src/lib/datasets/sample/ctdet.py`` (objects as points):

    1. boxes (x1, y1, x2, y2), in pixels of the network input, are clipped (``clip_to``) and scaled by the ratio
       output / input; boxes with zero width or height after clipping are dropped, as all three originals do;
    2. per box, one radius ``max(min_radius, int(gaussian_radius((ceil h, ceil w), min_overlap)))`` from its size in
       cells, shared by all its keypoints;
    3. per keypoint type, the integer cell ``int(f)`` and offset ``f - int(f)``, and a Gaussian of sigma =
       (2r + 1) / ``sigma_factor`` drawn into the heatmap of the box's class with class-wise max blending.

    The heatmaps are drawn into the (image, class) planes that hold an object only (:class:`CompactHeatmap`): with
    many classes the dense (B, C, H, W) target is mostly planes of zeros (COCO, 20 objects per image: about 18 of 80
    planes hold one), which would be allocated, zeroed and read by the loss for nothing.
    ``HeatmapTargets.heatmaps`` gives the dense tensors when they are wanted.

    Boxes are read with mmdet's ``get_box_tensor``, so ``HorizontalBoxes`` (``boxtype2tensor=False``) and plain
    (n, 4) tensors both work. Objects of ``batch_gt_instances_ignore`` give per-pixel loss weights
    (``HeatmapTargets.weights``) instead of targets.

    Args:
        keypoints (Sequence[str]): keypoint types among ``'top_left'``, ``'bottom_right'`` and ``'center'``.
            Defaults to ``('center',)``.
        ratio (float | tuple[float, float], optional): output / input scale (x, y). CornerNet uses 128/511.
            Exclusive with ``stride``. When both are None the ratio is read off the shapes: feature size / batch input
            size, which gives 128/511 for a 511 input and a 128 output, as the originals. Defaults to None.
        stride (int, optional): output stride; the ratio is then 1 / stride. Defaults to None.
        radius_formula (str): ``'corrected'`` (CornerNet-Lite, mmdet) or ``'original'`` (CornerNet before its fix,
            CenterNet triplets and objects-as-points). See :func:`mmkp.models.utils.gaussian_radius`.
            Defaults to ``'corrected'``.
        min_overlap (float): IoU for the radius. CornerNet-Lite 0.3, Saccade 0.5, the triplets and objects-as-points
            repositories 0.7 (with the original formula). Defaults to 0.3.
        sigma_factor (float | dict[str, float]): diameter / sigma, or one per keypoint type (keys missing from the
            dict use 6). The triplets center heatmap uses 5. Defaults to 6.
        min_radius (int): lower bound of the radius in cells. Defaults to 0.
        clip_to (str, optional): ``'input'`` clips boxes to [0, W_img - 1] x [0, H_img - 1] in input pixels before
            scaling (CornerNet ``_clip_detections``; ``img_shape`` of each image when metas are given, else the batch
            input shape); ``'output'`` clips the scaled boxes to [0, W_out - 1] x [0, H_out - 1] (objects-as-points);
            None leaves boxes as they are (mmdet). Defaults to ``'input'``.

    Raises:
        ValueError: on an unknown keypoint type, radius formula or ``clip_to``, or when both ``ratio`` and
            ``stride`` are given.

    Example:
        >>> from mmengine.structures import InstanceData
        >>> assigner = GaussianHeatmapAssigner(keypoints=('center',), stride=4)
        >>> gt = InstanceData(bboxes=torch.tensor([[10., 20., 60., 90.]]), labels=torch.tensor([1]))
        >>> t = assigner.assign([gt], feat_shape=(32, 32), input_shape=(128, 128), num_classes=3)
        >>> t.heatmaps['center'].shape, t.sizes[0, 0].tolist()
        (torch.Size([1, 3, 32, 32]), [12.5, 17.5])
    """

    def __init__(self,
                 keypoints: Sequence[str] = ('center', ),
                 ratio: Optional[Union[float, Tuple[float, float]]] = None,
                 stride: Optional[int] = None,
                 radius_formula: str = 'corrected',
                 min_overlap: float = 0.3,
                 sigma_factor: Union[float, Dict[str, float]] = 6.0,
                 min_radius: int = 0,
                 clip_to: Optional[str] = 'input') -> None:
        keypoints = tuple(keypoints)
        unknown = [k for k in keypoints if k not in KEYPOINTS]
        if unknown or not keypoints:
            raise ValueError(f'keypoints must be a non-empty subset of {KEYPOINTS}, got {keypoints}')
        if radius_formula not in RADIUS_FORMULAS:
            raise ValueError(f'radius_formula must be one of {RADIUS_FORMULAS}, got {radius_formula!r}')
        if clip_to not in ('input', 'output', None):
            raise ValueError(f"clip_to must be 'input', 'output' or None, got {clip_to!r}")
        if ratio is not None and stride is not None:
            raise ValueError('give either ratio or stride, not both')
        if not 0 < min_overlap < 1:
            raise ValueError(f'min_overlap must lie in (0, 1), got {min_overlap}')
        self.keypoints = keypoints
        if stride is not None:
            ratio = 1.0 / stride
        self.ratio = to_xy_ratio(ratio)
        self.radius_formula = radius_formula
        self.min_overlap = float(min_overlap)
        if isinstance(sigma_factor, dict):
            bad = [k for k in sigma_factor if k not in KEYPOINTS]
            if bad:
                raise ValueError(f'sigma_factor keys must be keypoint types {KEYPOINTS}, got {bad}')
            self.sigma_factor = {k: float(sigma_factor.get(k, 6.0)) for k in keypoints}
        else:
            self.sigma_factor = {k: float(sigma_factor) for k in keypoints}
        self.min_radius = int(min_radius)
        self.clip_to = clip_to

    def get_ratio(self, feat_shape: Tuple[int, int], input_shape: Tuple[int, int]) -> Tuple[float, float]:
        """(x, y) scale from input pixels to feature cells: the configured ratio, or feat / input."""
        if self.ratio is not None:
            return self.ratio
        return feat_shape[1] / input_shape[1], feat_shape[0] / input_shape[0]

    def assign(self,
               batch_gt_instances: List[InstanceData],
               feat_shape: Tuple[int, int],
               input_shape: Tuple[int, int],
               num_classes: int,
               batch_img_metas: Optional[List[dict]] = None,
               batch_gt_instances_ignore: Optional[List[Optional[InstanceData]]] = None) -> HeatmapTargets:
        """Compute the targets of a batch.

        Args:
            batch_gt_instances (list[InstanceData]): per image, ``bboxes`` (n_i, 4) as (x1, y1, x2, y2) in pixels
                of the network input (a tensor or mmdet ``HorizontalBoxes``) and ``labels`` (n_i,) in
                [0, num_classes).
            feat_shape (tuple[int, int]): (H, W) of the output maps.
            input_shape (tuple[int, int]): (H, W) of the batch input (``batch_input_shape``).
            num_classes (int): number of heatmap channels.
            batch_img_metas (list[dict], optional): per image metas; ``img_shape`` is used by ``clip_to='input'``.
            batch_gt_instances_ignore (list[InstanceData], optional): per image, objects to ignore (``bboxes``,
                ``labels``; None or empty for none): their Gaussians zero the heatmap-loss weight
                (``HeatmapTargets.weights``). Defaults to None.

        Returns:
            HeatmapTargets: see its docstring.

        Raises:
            ValueError: when a label lies outside [0, num_classes), boxes are not of shape (n, 4), or the ignored
                objects are given for another number of images.
        """
        feat_h, feat_w = int(feat_shape[0]), int(feat_shape[1])
        boxes = self._scaled_boxes(batch_gt_instances, feat_shape, input_shape, num_classes, batch_img_metas,
                                   'batch_gt_instances')
        num_imgs, max_objs = len(batch_gt_instances), boxes['max_objs']
        img_index, slot, labels, keep = boxes['img_index'], boxes['slot'], boxes['labels'], boxes['keep']
        x1, y1, x2, y2 = boxes['corners']
        device = labels.device
        box_w, box_h = x2 - x1, y2 - y1

        mask = torch.zeros((num_imgs, max_objs), dtype=torch.bool, device=device)
        mask[img_index, slot] = keep
        out_labels = torch.full((num_imgs, max_objs), -1, dtype=torch.long, device=device)
        out_labels[img_index[keep], slot[keep]] = labels[keep]
        sizes_out = x1.new_zeros((num_imgs, max_objs, 2))
        sizes_out[img_index[keep], slot[keep]] = torch.stack([box_w, box_h], -1)[keep]

        radius = integer_radius(box_h[keep], box_w[keep], self.min_overlap, self.radius_formula, self.min_radius)
        # the (image, class) planes that hold an object, ascending, and each object's row among them
        planes, plane_row = torch.unique(img_index[keep] * num_classes + labels[keep], return_inverse=True)
        dense_shape = (num_imgs, num_classes, feat_h, feat_w)
        compact_heatmaps, indices, offsets = {}, {}, {}
        kept_boxes = tuple(c[keep] for c in (x1, y1, x2, y2))
        for name in self.keypoints:
            heat, (cx, cy), (off_x, off_y) = self._draw_keypoints(name, kept_boxes, plane_row, planes.numel(),
                                                                  radius, feat_shape)
            compact_heatmaps[name] = CompactHeatmap(heat, planes, dense_shape)
            index = torch.zeros((num_imgs, max_objs), dtype=torch.long, device=device)
            index[img_index[keep], slot[keep]] = cy * feat_w + cx
            indices[name] = index
            offset = x1.new_zeros((num_imgs, max_objs, 2))
            offset[img_index[keep], slot[keep]] = torch.stack([off_x, off_y], -1)
            offsets[name] = offset
        weights = self._ignore_weights(batch_gt_instances_ignore, feat_shape, input_shape, num_classes,
                                       batch_img_metas, num_imgs)
        return HeatmapTargets(compact_heatmaps, indices, offsets, sizes_out, out_labels, mask, weights)

    @staticmethod
    def _keypoint(name: str, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor) -> Tuple[Tensor, Tensor]:
        """(x, y) of keypoint type ``name`` of boxes in feature cells."""
        if name == 'top_left':
            return x1, y1
        if name == 'bottom_right':
            return x2, y2
        return (x1 + x2) / 2, (y1 + y2) / 2

    def _draw_keypoints(self, name: str, boxes: Tuple[Tensor, Tensor, Tensor, Tensor], rows: Tensor, num_rows: int,
                        radius: Tensor, feat_shape: Tuple[int, int]
                        ) -> Tuple[Tensor, Tuple[Tensor, Tensor], Tuple[Tensor, Tensor]]:
        """The Gaussians of keypoint type ``name`` of N boxes, drawn on ``num_rows`` planes of the feature size.

        Args:
            name (str): keypoint type (``'top_left'``, ``'bottom_right'``, ``'center'``).
            boxes (tuple[Tensor]): x1, y1, x2, y2, each (N,), in feature cells.
            rows (Tensor): (N,) long, the plane each box is drawn on.
            num_rows (int): number of planes.
            radius (Tensor): (N,) long Gaussian radii in cells.
            feat_shape (tuple[int, int]): (H, W) of the planes.

        Returns:
            tuple: ``heat`` (num_rows, H, W) (element-wise max of the Gaussians), ``(cx, cy)`` (N,) long integer
            cells of the keypoints, ``(off_x, off_y)`` (N,) their sub-cell offsets.
        """
        feat_h, feat_w = int(feat_shape[0]), int(feat_shape[1])
        px, py = self._keypoint(name, *boxes)
        cx, off_x = keypoint_grid_position(px, feat_w)
        cy, off_y = keypoint_grid_position(py, feat_h)
        heat = boxes[0].new_zeros((num_rows, feat_h, feat_w))
        draw_gaussians(heat, rows, cx, cy, radius, self.sigma_factor[name])
        return heat, (cx, cy), (off_x, off_y)

    def _scaled_boxes(self, batch_instances: Sequence[Optional[InstanceData]], feat_shape: Tuple[int, int],
                      input_shape: Tuple[int, int], num_classes: int, batch_img_metas: Optional[List[dict]],
                      field: str) -> dict:
        """Every box of the batch clipped (``clip_to``) and scaled to feature cells, flattened over images.

        Returns:
            dict: ``corners`` (x1, y1, x2, y2), each (N,) in cells; ``labels`` (N,); ``img_index`` (N,) and ``slot``
            (N,) (image and position inside it); ``keep`` bool (N,) (positive width and height); ``max_objs``.
        """
        feat_h, feat_w = int(feat_shape[0]), int(feat_shape[1])
        ratio_x, ratio_y = self.get_ratio(feat_shape, input_shape)
        instances = [gt if gt is not None else InstanceData(bboxes=torch.zeros((0, 4)),
                                                            labels=torch.zeros((0, ), dtype=torch.long))
                     for gt in batch_instances]
        num_imgs = len(instances)
        box_list = [get_box_tensor(gt.bboxes) for gt in instances]
        device = box_list[0].device if num_imgs else torch.device('cpu')
        for i, b in enumerate(box_list):
            if b.numel() and b.shape[-1] != 4:
                raise ValueError(f'{field}[{i}].bboxes must be of shape (n, 4), got {tuple(b.shape)}')
        counts = [len(b.reshape(-1, 4)) for b in box_list]
        bboxes = torch.cat([b.reshape(-1, 4).float().to(device) for b in box_list]) if num_imgs else \
            torch.zeros((0, 4), device=device)
        labels = torch.cat([gt.labels.reshape(-1).long().to(device) for gt in instances]) if num_imgs else \
            torch.zeros((0, ), dtype=torch.long, device=device)
        if bboxes.shape[0] != labels.shape[0]:
            raise ValueError(f'{field}: bboxes ({bboxes.shape[0]}) and labels ({labels.shape[0]}) differ in number')
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f'{field}: labels must lie in [0, {num_classes}), got min {int(labels.min())} '
                             f'max {int(labels.max())}')
        img_index = torch.repeat_interleave(torch.arange(num_imgs, device=device), torch.tensor(counts, device=device))
        # slot of each object inside its image's row of the (B, M) outputs
        starts = torch.tensor([0] + counts[:-1], device=device).cumsum(0) if num_imgs else img_index
        slot = torch.arange(bboxes.shape[0], device=device) - starts[img_index]

        x1, y1, x2, y2 = bboxes.unbind(-1)
        if self.clip_to == 'input':
            if batch_img_metas is not None:
                sizes = torch.tensor([meta['img_shape'][:2] for meta in batch_img_metas],
                                     dtype=bboxes.dtype, device=device)[img_index]
                max_y, max_x = sizes[:, 0] - 1, sizes[:, 1] - 1
            else:
                max_y = bboxes.new_full((bboxes.shape[0], ), input_shape[0] - 1)
                max_x = bboxes.new_full((bboxes.shape[0], ), input_shape[1] - 1)
            x1, x2 = torch.minimum(x1.clamp(min=0), max_x), torch.minimum(x2.clamp(min=0), max_x)
            y1, y2 = torch.minimum(y1.clamp(min=0), max_y), torch.minimum(y2.clamp(min=0), max_y)
        x1, x2 = x1 * ratio_x, x2 * ratio_x
        y1, y2 = y1 * ratio_y, y2 * ratio_y
        if self.clip_to == 'output':
            x1, x2 = x1.clamp(0, feat_w - 1), x2.clamp(0, feat_w - 1)
            y1, y2 = y1.clamp(0, feat_h - 1), y2.clamp(0, feat_h - 1)
        keep = (x2 - x1 > 0) & (y2 - y1 > 0)
        return dict(corners=(x1, y1, x2, y2), labels=labels, img_index=img_index, slot=slot, keep=keep,
                    max_objs=max(counts, default=0))

    def _ignore_weights(self, batch_gt_instances_ignore: Optional[List[Optional[InstanceData]]],
                        feat_shape: Tuple[int, int], input_shape: Tuple[int, int], num_classes: int,
                        batch_img_metas: Optional[List[dict]], num_imgs: int) -> Optional[Dict[str, Tensor]]:
        """Per keypoint type, (B, num_classes, H, W) weights: 0 under the ignored objects' Gaussians, else 1."""
        if batch_gt_instances_ignore is None:
            return None
        if len(batch_gt_instances_ignore) != num_imgs:
            raise ValueError(f'batch_gt_instances_ignore has {len(batch_gt_instances_ignore)} entries for '
                             f'{num_imgs} images')
        if not any(gt is not None and len(gt) > 0 for gt in batch_gt_instances_ignore):
            return None
        feat_h, feat_w = int(feat_shape[0]), int(feat_shape[1])
        boxes = self._scaled_boxes(batch_gt_instances_ignore, feat_shape, input_shape, num_classes, batch_img_metas,
                                   'batch_gt_instances_ignore')
        keep = boxes['keep']
        x1, y1, x2, y2 = (c[keep] for c in boxes['corners'])
        plane = boxes['img_index'][keep] * num_classes + boxes['labels'][keep]
        radius = integer_radius(y2 - y1, x2 - x1, self.min_overlap, self.radius_formula, self.min_radius)
        weights = {}
        for name in self.keypoints:
            heat = self._draw_keypoints(name, (x1, y1, x2, y2), plane, num_imgs * num_classes, radius, feat_shape)[0]
            weights[name] = (heat <= 0).to(heat.dtype).view(num_imgs, num_classes, feat_h, feat_w)
        return weights

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(keypoints={self.keypoints}, ratio={self.ratio}, '
                f'radius_formula={self.radius_formula!r}, min_overlap={self.min_overlap}, '
                f'sigma_factor={self.sigma_factor}, min_radius={self.min_radius}, clip_to={self.clip_to!r})')
