"""Binary attention-map targets of CornerNet-Saccade, one map per object-size range, a whole batch at once."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS

#: ``att_ranges`` / ``att_ratios`` of princeton-vl/CornerNet-Lite@6a54505 ``core/dbs/detection.py``: the 16 x 16 map
#: (stride 16) for objects whose long side is 96-256 input pixels, 32 x 32 (stride 8) for 32-96, 64 x 64 (stride 4)
#: for 0-32; both ends inclusive.
SACCADE_ATTENTION_RANGES = ((96, 256), (32, 96), (0, 32))
SACCADE_ATTENTION_STRIDES = (16, 8, 4)


@TASK_UTILS.register_module()
class SaccadeAttentionAssigner:
    """Class-agnostic binary attention targets: one cell per object, in the map of its size range.

    princeton-vl/CornerNet-Lite@6a54505 ``core/sample/cornernet_saccade.py::create_attention_mask``: for every
    object of the crop with long side ``m = max(x2 - x1, y2 - y1)`` (input pixels), and every map ``i`` with
    ``lo_i <= m <= hi_i`` (inclusive both ends, so a long side of exactly 32 or 96 marks two maps; above 256: none),
    the cell ``(int(cy / stride_i), int(cx / stride_i))`` of the box centre is set to 1. No Gaussian.

    Boxes are clipped to [0, W - 1] x [0, H - 1] of ``img_shape`` first (the original's crop clipping; a no-op on
    boxes the sampler already clipped), boxes without width or height are left out, and a centre cell beyond the map
    (an input larger than ``stride * map size``) is clamped onto its last row / column.

    Args:
        ranges (Sequence[tuple[float, float]]): (lo, hi) of the long side in input pixels, one per map, in the order
            of the maps. Defaults to :data:`SACCADE_ATTENTION_RANGES`.
        strides (Sequence[int]): input pixels per cell of each map. Defaults to :data:`SACCADE_ATTENTION_STRIDES`.

    Raises:
        ValueError: when ``ranges`` and ``strides`` differ in length, a range has lo > hi, or a stride is not
            positive.
    """

    def __init__(self,
                 ranges: Sequence[Tuple[float, float]] = SACCADE_ATTENTION_RANGES,
                 strides: Sequence[int] = SACCADE_ATTENTION_STRIDES) -> None:
        ranges = tuple((float(lo), float(hi)) for lo, hi in ranges)
        strides = tuple(int(s) for s in strides)
        if len(ranges) != len(strides) or not ranges:
            raise ValueError(f'ranges ({len(ranges)}) and strides ({len(strides)}) need one value per map each')
        if any(lo > hi for lo, hi in ranges) or min(strides) < 1:
            raise ValueError(f'ranges need lo <= hi and strides must be positive, got {ranges}, {strides}')
        self.ranges = ranges
        self.strides = strides

    @property
    def num_maps(self) -> int:
        """Number of attention maps."""
        return len(self.ranges)

    def assign(self,
               batch_instances: Sequence[Sequence[Optional[InstanceData]]],
               map_shapes: Sequence[Tuple[int, int]],
               batch_img_metas: Optional[List[dict]] = None) -> List[Tensor]:
        """Targets of a batch.

        Args:
            batch_instances (Sequence[Sequence[InstanceData]]): per image, the instance sets whose boxes all count
                (e.g. ``(gt_instances, ignored_instances)``: the original marks every object of the crop, the
                ignored ones too); each ``bboxes`` (n, 4) (x1, y1, x2, y2) in input pixels; None entries are skipped.
            map_shapes (Sequence[tuple[int, int]]): (H, W) of each map, in the order of ``ranges``.
            batch_img_metas (list[dict], optional): per image metas; ``img_shape`` clips the boxes. Without them
                nothing is clipped.

        Returns:
            list[Tensor]: per map, the (B, 1, H, W) float target in {0, 1}.

        Raises:
            ValueError: when ``map_shapes`` has another length than ``ranges`` or boxes are not (n, 4).
        """
        if len(map_shapes) != self.num_maps:
            raise ValueError(f'map_shapes has {len(map_shapes)} entries for {self.num_maps} attention maps')
        boxes, image = [], []
        for i, sets in enumerate(batch_instances):
            for instances in sets:
                if instances is None or len(instances) == 0:
                    continue
                b = get_box_tensor(instances.bboxes).float()
                if b.dim() != 2 or b.shape[-1] != 4:
                    raise ValueError(f'batch_instances[{i}].bboxes must be of shape (n, 4), got {tuple(b.shape)}')
                if batch_img_metas is not None:
                    h, w = batch_img_metas[i]['img_shape'][:2]
                    b = torch.stack([b[:, 0].clamp(0, w - 1), b[:, 1].clamp(0, h - 1), b[:, 2].clamp(0, w - 1),
                                     b[:, 3].clamp(0, h - 1)], -1)
                boxes.append(b)
                image.append(torch.full((len(b), ), i, dtype=torch.long, device=b.device))
        num_imgs = len(batch_instances)
        device = boxes[0].device if boxes else torch.device('cpu')
        targets = [torch.zeros((num_imgs, 1, int(h), int(w)), device=device) for h, w in map_shapes]
        if not boxes:
            return targets
        boxes, image = torch.cat(boxes), torch.cat(image)
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        long_side = torch.maximum(width, height)
        valid = (width > 0) & (height > 0)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        for target, (lo, hi), stride in zip(targets, self.ranges, self.strides):
            sel = valid & (long_side >= lo) & (long_side <= hi)
            map_h, map_w = target.shape[-2:]
            col = torch.div(cx[sel], stride, rounding_mode='floor').long().clamp(0, map_w - 1)
            row = torch.div(cy[sel], stride, rounding_mode='floor').long().clamp(0, map_h - 1)
            target[image[sel], 0, row, col] = 1
        return targets

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(ranges={self.ranges}, strides={self.strides})'
