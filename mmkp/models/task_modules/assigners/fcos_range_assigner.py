"""FCOS targets (range, center sampling, center-ness) for all points of all levels and all images at once."""
from typing import List, NamedTuple, Sequence, Tuple

import torch
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS

#: "Infinity" of the original ``INF = 100000000`` (tianzhi0549/FCOS@a773f12 ``fcos_core/modeling/rpn/fcos/loss.py``)
#: and of mmdet's FCOSHead.
INF = 1e8
#: Per-level ranges of max(l, t, r, b) in input pixels, P3-P7 (same file, ``prepare_targets``).
DEFAULT_REGRESS_RANGES = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF))


class FCOSTargets(NamedTuple):
    """Targets of :class:`FCOSRangeAssigner` for B images and N points (all levels, level after level).

    Points are in the order of the points given to :meth:`FCOSRangeAssigner.assign` (mmdet's ``MlvlPointGenerator``
    and the original's ``compute_locations``): level by level, and inside a level row-major (index ``j * W_l + i``
    for column i and row j).

    Attributes:
        labels (Tensor): int64 (B, N), class in [0, num_classes) of positives, ``num_classes`` for background.
        bbox_targets (Tensor): (B, N, 4) distances (left, top, right, bottom) from each point to the edges of its
            box, in input pixels, or in units of the level's stride with ``norm_on_bbox``; 0 for background.
        centerness_targets (Tensor): (B, N), sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of positives; 0 for
            background.
        gt_inds (Tensor): int64 (B, N), index of the assigned box in the image's ``gt_instances``; -1 for background.
        num_points_per_level (list[int]): H_l * W_l of each level, to split N back into levels.
    """
    labels: Tensor
    bbox_targets: Tensor
    centerness_targets: Tensor
    gt_inds: Tensor
    num_points_per_level: List[int]


def centerness_target(bbox_targets: Tensor) -> Tensor:
    """Center-ness of (l, t, r, b) distances: sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)).

    ``compute_centerness_targets`` of tianzhi0549/FCOS@a773f12 ``fcos_core/modeling/rpn/fcos/loss.py``; mmdet's
    ``FCOSHead.centerness_target`` computes the same operations in the same order, so the values are bit-identical.
    The ratio is unit-free: the distances may be in input pixels or in stride units. The one place of this formula:
    :meth:`FCOSRangeAssigner.assign` calls it on all its points and zeroes the background afterwards.

    The four sides are read as views of ``bbox_targets`` (no copy) and the quotients, their product and the square
    root are computed in place in two new (...) tensors; ``bbox_targets`` itself is left unchanged. Meant for
    targets (no gradient is needed through it).

    Args:
        bbox_targets (Tensor): (..., 4) distances (l, t, r, b), all > 0 (l = r = 0 or t = b = 0 gives
            0 / 0 = NaN; negative sides give meaningless values).

    Returns:
        Tensor: (...), in (0, 1] for positive distances, same dtype and device as ``bbox_targets``.

    Raises:
        ValueError: when the last dimension of ``bbox_targets`` is not 4.
    """
    if bbox_targets.dim() == 0 or bbox_targets.shape[-1] != 4:
        raise ValueError('bbox_targets must be (..., 4) distances (l, t, r, b), got shape '
                         f'{tuple(bbox_targets.shape)}')
    left, top, right, bottom = bbox_targets.unbind(-1)
    horizontal = torch.minimum(left, right).div_(torch.maximum(left, right))
    vertical = torch.minimum(top, bottom).div_(torch.maximum(top, bottom))
    return horizontal.mul_(vertical).sqrt_()


@TASK_UTILS.register_module()
class FCOSRangeAssigner:
    """FCOS point-to-box assignment for a whole batch, vectorised over images, levels' points and boxes.

    Follows ``compute_targets_for_locations``, ``get_sample_region`` and ``prepare_targets`` of tianzhi0549/FCOS@a773f12
    ``fcos_core/modeling/rpn/fcos/loss.py``, with mmdet's label convention. The points are not made here: the caller
    passes them (:class:`~mmkp.models.dense_heads.FCOSPointHead` passes those of its ``prior_generator``, the same
    points its ``predict_by_feat`` decodes at; the point offset inside a cell is the head's ``point_offset``). A point
    (x, y) of level l is a positive of box g when

    (a) it lies strictly inside g: min(l, t, r, b) > 0; or, with ``center_sampling``, strictly inside the sub-box
        centre(g) +- ``center_sample_radius`` * stride clipped to g (``get_sample_region``, from FCOS_PLUS);
    (b) lo_l <= max(l, t, r, b) <= hi_l, both bounds inclusive, (lo_l, hi_l) = ``regress_ranges[l]`` in pixels;

    and when several boxes qualify it takes the one of smallest area (x2 - x1) * (y2 - y1), the first in the image's
    box order among equal areas (what ``areas.min(dim=1)`` returns in the original and in mmdet).

    Memory: the tests (a) and (b) are separable in x and y (max(l, t, r, b) = max(max(l, r), max(t, b))), so they are
    evaluated on (B, W_l, G) and (B, H_l, G) tensors and combined into a single boolean (B, H_l, W_l, G) per level;
    boxes are visited in (area, index) order so the smallest-area box is the first True along G (one ``max`` pass).
    No float (points x boxes) tensor is built.

    Deviations from the original (none change the assignment in mmdet's box convention):

    - labels: background is ``num_classes`` and classes are 0-based (mmdet); the original uses 0 / 1-based;
    - the original's ``BoxList.area()`` adds 1 to width and height because its boxes are inclusive
      (x2 = x + w - 1); mmdet boxes are exclusive (x2 = x + w), where (x2 - x1) * (y2 - y1) is the same area;
    - a box of area >= 1e8 px^2 (the original's INF) is never assigned by the original / mmdet; here it is.

    Args:
        regress_ranges (Sequence[tuple[float, float]]): per level (lo, hi) of max(l, t, r, b) in input pixels.
            Defaults to ``((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8))``.
        center_sampling (bool): positives only inside the centre sub-box (the "imprv" configs,
            ``CENTER_SAMPLING_RADIUS: 1.5``). Defaults to False (the original paper).
        center_sample_radius (float): half-size of the centre sub-box in strides. Defaults to 1.5.
        norm_on_bbox (bool): divide the distances by the level's stride (``NORM_REG_TARGETS``). Defaults to False.

    Raises:
        ValueError: when a regress range is not a (lo, hi) pair with lo <= hi, or ``center_sample_radius`` <= 0.

    Note:
        The assigner no longer lays out points itself and has no ``offset`` argument (``TypeError`` if given):
        points and their offset come from the head (``FCOSPointHead(point_offset=...)``, default 0.5, mmdet's
        ``MlvlPointGenerator`` and the original's ``x * s + s // 2`` for even strides). ``FCOSPointHead`` still
        accepts an old ``train_cfg.assigner.offset`` equal to its ``point_offset`` and refuses a different one.

    Example:
        >>> from mmdet.models.task_modules.prior_generators import MlvlPointGenerator
        >>> gt = InstanceData(bboxes=torch.tensor([[0., 0., 40., 40.]]), labels=torch.tensor([2]))
        >>> sizes, strides = [(8, 8), (4, 4)], [8, 16]
        >>> points = MlvlPointGenerator(strides).grid_priors(sizes, device='cpu')
        >>> assigner = FCOSRangeAssigner(regress_ranges=((-1, 64), (64, 1e8)))
        >>> t = assigner.assign([gt], points, sizes, strides, num_classes=3)
        >>> t.labels.shape, int((t.labels == 2).sum()), t.bbox_targets[0, 0].tolist()
        (torch.Size([1, 80]), 25, [4.0, 4.0, 36.0, 36.0])
    """

    def __init__(self,
                 regress_ranges: Sequence[Tuple[float, float]] = DEFAULT_REGRESS_RANGES,
                 center_sampling: bool = False,
                 center_sample_radius: float = 1.5,
                 norm_on_bbox: bool = False) -> None:
        ranges = []
        for i, rng in enumerate(regress_ranges):
            if len(rng) != 2 or not float(rng[0]) <= float(rng[1]):
                raise ValueError(f'regress_ranges[{i}] must be a (lo, hi) pair with lo <= hi, got {rng}')
            ranges.append((float(rng[0]), float(rng[1])))
        if not ranges:
            raise ValueError('regress_ranges must have one (lo, hi) pair per level, got none')
        if center_sampling and not center_sample_radius > 0:
            raise ValueError(f'center_sample_radius must be > 0, got {center_sample_radius}')
        self.regress_ranges = tuple(ranges)
        self.center_sampling = bool(center_sampling)
        self.center_sample_radius = float(center_sample_radius)
        self.norm_on_bbox = bool(norm_on_bbox)

    @staticmethod
    def _pad_gts(batch_gt_instances: List[InstanceData], num_classes: int,
                 device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
        """(B, G, 4) boxes, (B, G) labels and (B, G) validity of the batch, G the most boxes of an image."""
        counts = [len(gt) for gt in batch_gt_instances]
        num_imgs, max_gts = len(counts), max(counts, default=0)
        boxes = [get_box_tensor(gt.bboxes) for gt in batch_gt_instances]
        for i, b in enumerate(boxes):
            if b.dim() != 2 or b.shape[-1] != 4:
                raise ValueError(f'batch_gt_instances[{i}].bboxes must be (n, 4) boxes (x1, y1, x2, y2), '
                                 f'got shape {tuple(b.shape)}')
        boxes = torch.cat(boxes).to(device) if boxes else torch.zeros((0, 4), device=device)
        labels = torch.cat([gt.labels.reshape(-1) for gt in batch_gt_instances]).to(device).long() \
            if num_imgs else torch.zeros((0, ), dtype=torch.long, device=device)
        if labels.numel() != boxes.shape[0]:
            raise ValueError(f'batch_gt_instances: {boxes.shape[0]} bboxes but {labels.numel()} labels')
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f'batch_gt_instances.labels must lie in [0, {num_classes}), got min '
                             f'{int(labels.min())} max {int(labels.max())}')
        counts_t = torch.tensor(counts, device=device)
        img_index = torch.repeat_interleave(torch.arange(num_imgs, device=device), counts_t)
        starts = torch.cumsum(counts_t, 0) - counts_t
        slot = torch.arange(boxes.shape[0], device=device) - starts[img_index]
        dtype = boxes.dtype if boxes.is_floating_point() else torch.float32
        pad_boxes = torch.zeros((num_imgs, max_gts, 4), dtype=dtype, device=device)
        pad_boxes[img_index, slot] = boxes.to(dtype)
        pad_labels = torch.full((num_imgs, max_gts), num_classes, dtype=torch.long, device=device)
        pad_labels[img_index, slot] = labels
        valid = torch.zeros((num_imgs, max_gts), dtype=torch.bool, device=device)
        valid[img_index, slot] = True
        return pad_boxes, pad_labels, valid

    def assign(self, batch_gt_instances: List[InstanceData], mlvl_points: Sequence[Tensor],
               featmap_sizes: Sequence[Tuple[int, int]], strides: Sequence[int], num_classes: int) -> FCOSTargets:
        """Targets of every point of every level for every image of the batch.

        Args:
            batch_gt_instances (list[InstanceData]): per image, ``bboxes`` (n_i, 4) as (x1, y1, x2, y2) in input
                pixels (tensor or mmdet ``HorizontalBoxes``) and ``labels`` (n_i,) in [0, num_classes).
            mlvl_points (Sequence[Tensor]): per level, the (H_l * W_l, 2) points (x, y) in input pixels, row-major
                (index j * W_l + i for column i and row j), as mmdet ``MlvlPointGenerator.grid_priors`` lays them
                out; (H_l * W_l, 4) points ``with_stride`` are accepted (the last two columns are ignored). The grid
                is read from the first row (x of each column) and the first column (y of each row).
            featmap_sizes (Sequence[tuple[int, int]]): (H_l, W_l) of each level.
            strides (Sequence[int]): stride of each level in input pixels (center-sampling radius and
                ``norm_on_bbox``).
            num_classes (int): number of classes; also the background label.

        Returns:
            FCOSTargets: see its docstring.

        Raises:
            ValueError: when ``mlvl_points``, ``featmap_sizes``, ``strides`` and ``regress_ranges`` differ in length,
                a level's points are not (H_l * W_l, 2) or its size not positive, a stride is not a number, a box
                tensor is not (n, 4), boxes and labels differ in number, or a label is out of range.
        """
        num_levels = len(self.regress_ranges)
        if not len(mlvl_points) == len(featmap_sizes) == len(strides) == num_levels:
            raise ValueError(f'mlvl_points ({len(mlvl_points)}), featmap_sizes ({len(featmap_sizes)}), strides '
                             f'({len(strides)}) and the assigner\'s regress_ranges ({num_levels}) must have one entry '
                             'per level')
        for s in strides:
            if not isinstance(s, (int, float)) or isinstance(s, bool):
                raise ValueError(f'strides must be numbers (square strides), got {strides}')
        featmap_sizes = [(int(h), int(w)) for h, w in featmap_sizes]
        for lvl, (pts, (h, w)) in enumerate(zip(mlvl_points, featmap_sizes)):
            if h < 1 or w < 1:
                raise ValueError(f'featmap_sizes[{lvl}] must be a positive (H, W), got {(h, w)}')
            if pts.dim() != 2 or pts.shape[0] != h * w or pts.shape[1] not in (2, 4):
                raise ValueError(f'mlvl_points[{lvl}] must be ({h} * {w}, 2) points (x, y) of a {h} x {w} map, got '
                                 f'shape {tuple(pts.shape)}')
        if not batch_gt_instances:
            raise ValueError('batch_gt_instances is empty: one InstanceData per image is needed')
        device = get_box_tensor(batch_gt_instances[0].bboxes).device
        boxes, labels, gt_valid = self._pad_gts(batch_gt_instances, num_classes, device)
        dtype = boxes.dtype
        num_imgs, max_gts = labels.shape
        num_points_per_level = [h * w for h, w in featmap_sizes]
        num_points = sum(num_points_per_level)

        # x of each column (W_l,) and y of each row (H_l,) of every level: views of the given row-major points
        mlvl_points = [pts[:, :2].to(device=device, dtype=dtype) for pts in mlvl_points]
        level_coords = [(pts[:w, 0], pts[::w, 1]) for pts, (_, w) in zip(mlvl_points, featmap_sizes)]
        point_stride = torch.cat([torch.full((n, ), float(s), dtype=dtype, device=device)
                                  for n, s in zip(num_points_per_level, strides)])

        if max_gts == 0:
            return FCOSTargets(
                torch.full((num_imgs, num_points), num_classes, dtype=torch.long, device=device),
                boxes.new_zeros((num_imgs, num_points, 4)), boxes.new_zeros((num_imgs, num_points)),
                torch.full((num_imgs, num_points), -1, dtype=torch.long, device=device), num_points_per_level)

        # visit boxes by (area, index): the first qualifying box is then the one areas.min(dim=1) picks
        areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        areas = areas.masked_fill(~gt_valid, float('inf'))
        order = torch.sort(areas, dim=1, stable=True)[1]  # (B, G)
        sorted_boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
        sorted_valid = gt_valid.gather(1, order)
        x1, y1, x2, y2 = (c[:, None, :] for c in sorted_boxes.unbind(-1))  # each (B, 1, G)
        if self.center_sampling:
            center_x, center_y = (x1 + x2) / 2, (y1 + y2) / 2

        first_sorted, found = [], []
        for (xs, ys), stride, (lo, hi) in zip(level_coords, strides, self.regress_ranges):
            xs, ys = xs[None, :, None], ys[None, :, None]  # (1, W, 1), (1, H, 1)
            lo_t, hi_t = boxes.new_tensor(lo), boxes.new_tensor(hi)
            left, right = xs - x1, x2 - xs  # (B, W, G)
            top, bottom = ys - y1, y2 - ys  # (B, H, G)
            if self.center_sampling:
                radius = boxes.new_tensor(stride * self.center_sample_radius)
                cx1, cy1 = center_x - radius, center_y - radius
                cx2, cy2 = center_x + radius, center_y + radius
                # the sub-box clipped to the box, written as get_sample_region's torch.where
                cx1, cy1 = torch.where(cx1 > x1, cx1, x1), torch.where(cy1 > y1, cy1, y1)
                cx2, cy2 = torch.where(cx2 > x2, x2, cx2), torch.where(cy2 > y2, y2, cy2)
                inside_x = ((xs - cx1) > 0) & ((cx2 - xs) > 0)
                inside_y = ((ys - cy1) > 0) & ((cy2 - ys) > 0)
            else:
                inside_x = (left > 0) & (right > 0)
                inside_y = (top > 0) & (bottom > 0)
            max_x, max_y = torch.maximum(left, right), torch.maximum(top, bottom)
            ok_x = inside_x & (max_x <= hi_t) & sorted_valid[:, None, :]
            ok_y = inside_y & (max_y <= hi_t)
            valid = ok_x[:, None, :, :] & ok_y[:, :, None, :]  # (B, H, W, G) bool
            if lo > 0:  # for lo <= 0 the test is implied: inside (either way) means max(l, t, r, b) > 0
                valid &= (max_x >= lo_t)[:, None, :, :] | (max_y >= lo_t)[:, :, None, :]
            is_found, first = valid.view(torch.uint8).max(dim=-1)  # first True along G (in area order)
            first_sorted.append(first.flatten(1))
            found.append(is_found.flatten(1).bool())
            del valid
        background = ~torch.cat(found, dim=1)  # (B, N)
        gt_inds = order.gather(1, torch.cat(first_sorted, dim=1))  # index in the image's boxes (any for bg)
        del first_sorted, found

        out_labels = labels.gather(1, gt_inds).masked_fill_(background, num_classes)
        # distances written in place into the gathered boxes: -x1 + x == x - x1 and x2 - x, bit for bit
        bbox_targets = boxes.gather(1, gt_inds[..., None].expand(-1, -1, 4))  # (B, N, 4)
        points = torch.cat(mlvl_points)[None]  # (1, N, 2)
        bbox_targets[..., :2].neg_().add_(points)
        bbox_targets[..., 2:].sub_(points)
        if self.norm_on_bbox:
            bbox_targets.div_(point_stride[None, :, None])
        bbox_targets.masked_fill_(background[..., None], 0)
        centerness = centerness_target(bbox_targets).masked_fill_(background, 0)  # background: 0 / 0 -> 0
        return FCOSTargets(out_labels, bbox_targets, centerness, gt_inds.masked_fill_(background, -1),
                           num_points_per_level)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(regress_ranges={self.regress_ranges}, '
                f'center_sampling={self.center_sampling}, center_sample_radius={self.center_sample_radius}, '
                f'norm_on_bbox={self.norm_on_bbox})')
