"""Decoding of CornerNet corner heatmaps into boxes: peaks, top-K corners per type, all pairs scored and filtered."""
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS
from ...utils.heatmap import Ratio, cells_to_original, gather_feat, split_detections, to_xy_ratio, topk_peaks




@TASK_UTILS.register_module()
class CornerPairDecoder:
    """Boxes from top-left / bottom-right corner heatmaps, embeddings and offsets (CornerNet ``_decode``).

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/utils.py::_decode``, vectorised over the batch:

    1. sigmoid heatmaps, ``local_maximum_kernel`` x ``local_maximum_kernel`` peak extraction, top ``topk`` corners
       per type over all classes and pixels (:func:`mmkp.models.utils.topk_peaks`);
    2. corner = integer cell + gathered offset (feature cells);
    3. all ``topk`` x ``topk`` (top-left, bottom-right) pairs scored (s_tl + s_br) / 2, and set to -1 when the classes
       differ, |e_tl - e_br| > ``ae_threshold``, br_x < tl_x or br_y < tl_y (strict: zero width / height kept, as the
       original; ``keep_zero_size=False`` rejects them as mmdet's ``CornerHead`` does), and, with
       ``reject_border``, when the top-left corner's integer cell lies on the first heatmap row or column or the
       bottom-right corner's on the last row or column (the original's ``no_border``, used by CornerNet-Saccade in
       its crops, ``core/test/cornernet_saccade.py``: a box cut by the crop edge is left to another crop);
    4. the top ``num_dets`` pairs; those scored -1 are dropped (the original drops them after rescaling);
    5. cells -> original-image pixels with each image's own metas (:func:`mmkp.models.utils.cells_to_original`:
       batch input size / feature size or 1 / ``ratio`` -- 511 / 128 for CornerNet --, ``border`` of a crop-pad
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
        reject_border (bool): reject pairs with a corner on the heatmap border (step 3). Defaults to False
            (CornerNet, Squeeze); CornerNet-Saccade's crops use True.

    Raises:
        ValueError: for non-positive ``topk`` / ``num_dets``, an even kernel or a bad ``ratio``.
    """

    def __init__(self,
                 topk: int = 100,
                 local_maximum_kernel: int = 3,
                 ae_threshold: float = 0.5,
                 num_dets: int = 1000,
                 keep_zero_size: bool = True,
                 ratio: Optional[Ratio] = None,
                 clip_border: bool = True,
                 num_candidates: Tuple[int, ...] = (1000, 16000),
                 reject_border: bool = False) -> None:
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
        self.ratio = to_xy_ratio(ratio)
        self.clip_border = clip_border
        self.num_candidates = tuple(num_candidates)
        self.reject_border = reject_border

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
        batch, _, height, width = tl_heat.shape
        kernel = self.local_maximum_kernel
        tl_s, tl_ind, tl_lab, tl_y, tl_x = topk_peaks(tl_heat, self.topk, kernel, self.num_candidates)
        br_s, br_ind, br_lab, br_y, br_x = topk_peaks(br_heat, self.topk, kernel, self.num_candidates)
        k = tl_s.shape[1]
        if self.reject_border:  # on the integer cells, before the offsets (the original's no_border)
            tl_on_border = (tl_y == 0) | (tl_x == 0)
            br_on_border = (br_y == height - 1) | (br_x == width - 1)
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
        if self.reject_border:
            reject |= tl_on_border.unsqueeze(2) | br_on_border.unsqueeze(1)
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
        bboxes = cells_to_original(bboxes, tl_heat.shape[-2:], batch_img_metas, self.ratio, rescale, self.clip_border)
        return split_detections(scores > -1, bboxes=bboxes, scores=scores, labels=labels, tl_scores=tl_scores,
                                br_scores=br_scores)

    def decode_outputs(self,
                       maps: Mapping[str, Mapping[str, Tensor]],
                       batch_img_metas: List[dict],
                       rescale: bool = True) -> List[InstanceData]:
        """:meth:`decode` of one stack of a keypoint head's named outputs.

        Args:
            maps (Mapping[str, Mapping[str, Tensor]]): ``maps[keypoint][branch]`` for keypoints ``'top_left'`` and
                ``'bottom_right'`` and branches ``'heatmap'``, ``'embedding'``, ``'offset'`` (one stack of
                :class:`mmkp.models.dense_heads.KeypointMaps`); other keypoint types are ignored.
            batch_img_metas (list[dict]): B metas.
            rescale (bool): see :meth:`decode`. Defaults to True.

        Returns:
            list[InstanceData]: as :meth:`decode`.

        Raises:
            KeyError: naming the missing keypoint type or branch.
        """
        tl, br = _require(maps, 'top_left'), _require(maps, 'bottom_right')
        return self.decode(tl['heatmap'], br['heatmap'], tl['embedding'], br['embedding'], tl['offset'],
                           br['offset'], batch_img_metas, rescale=rescale)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(topk={self.topk}, local_maximum_kernel={self.local_maximum_kernel}, '
                f'ae_threshold={self.ae_threshold}, num_dets={self.num_dets}, keep_zero_size={self.keep_zero_size}, '
                f'ratio={self.ratio}, clip_border={self.clip_border}, reject_border={self.reject_border})')


def _require(maps: Mapping[str, Mapping[str, Tensor]], keypoint: str,
             branches: Tuple[str, ...] = ('heatmap', 'embedding', 'offset')) -> Dict[str, Tensor]:
    """``maps[keypoint]`` with the given branches, or a KeyError naming what is missing."""
    if keypoint not in maps:
        raise KeyError(f'the decoder needs {keypoint!r} maps; the head gave {sorted(maps)}')
    missing = [b for b in branches if b not in maps[keypoint]]
    if missing:
        raise KeyError(f'the decoder needs the {missing} branches of {keypoint!r}; got {sorted(maps[keypoint])}')
    return dict(maps[keypoint])
