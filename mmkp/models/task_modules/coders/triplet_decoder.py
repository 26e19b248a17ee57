"""Decoding of CenterNet keypoint triplets: corner pairs (CornerNet decoding), center keypoints, center-region check."""
from typing import List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import TASK_UTILS
from ...utils.heatmap import cells_to_original, gather_feat, split_detections, topk_peaks
from .corner_pair_decoder import CornerPairDecoder, _require

#: Box area (original-image pixels^2, w * h) up to which the central region is the middle third (n = 3); larger
#: boxes use the middle fifth (n = 5). Duankaiwen/CenterNet@3ad3a10 ``test/coco.py`` (150 x 150).
SMALL_BOX_AREA = 22500.0


def central_regions(bboxes: Tensor, small_box_area: float = SMALL_BOX_AREA) -> Tensor:
    """Central regions of boxes, Duankaiwen/CenterNet@3ad3a10 ``test/coco.py``.

    n = 3 when ``w * h <= small_box_area``: x in ((2 x1 + x2) / 3, (x1 + 2 x2) / 3), y likewise; otherwise n = 5:
    x in ((3 x1 + 2 x2) / 5, (2 x1 + 3 x2) / 5), y likewise.

    Args:
        bboxes (Tensor): (..., 4) (x1, y1, x2, y2) in original-image pixels.
        small_box_area (float): the n = 3 / n = 5 switch, pixels^2. Defaults to 22500.

    Returns:
        Tensor: (..., 4) (left, top, right, bottom) of the open central regions.
    """
    x1, y1, x2, y2 = bboxes.unbind(-1)
    small = (x2 - x1) * (y2 - y1) <= small_box_area
    region3 = torch.stack([(2 * x1 + x2) / 3, (2 * y1 + y2) / 3, (x1 + 2 * x2) / 3, (y1 + 2 * y2) / 3], -1)
    region5 = torch.stack([(3 * x1 + 2 * x2) / 5, (3 * y1 + 2 * y2) / 5, (2 * x1 + 3 * x2) / 5,
                           (2 * y1 + 3 * y2) / 5], -1)
    return torch.where(small.unsqueeze(-1), region3, region5)


def center_region_check(bboxes: Tensor, scores: Tensor, labels: Tensor, centers: Tensor, center_scores: Tensor,
                        center_labels: Tensor, small_box_area: float = SMALL_BOX_AREA) -> Tuple[Tensor, Tensor]:
    """The triplets' center-region check, vectorised over boxes and centers (Duankaiwen/CenterNet@3ad3a10
    ``test/coco.py``).

    A box (with score > -1) is kept iff some center of the same class lies strictly inside its central region
    (:func:`central_regions`); its score becomes (2 * score + center score) / 3 with the first such center in
    the centers' order. Other boxes get score -1.

    Args:
        bboxes (Tensor): (B, D, 4) boxes in original-image pixels.
        scores (Tensor): (B, D) pair scores; -1 marks rejected pairs (left at -1).
        labels (Tensor): (B, D) classes.
        centers (Tensor): (B, N, 2) (x, y) center keypoints in the same pixels.
        center_scores (Tensor): (B, N).
        center_labels (Tensor): (B, N).
        small_box_area (float): see :func:`central_regions`. Defaults to 22500.

    Returns:
        tuple[Tensor, Tensor]: new ``scores`` (B, D) (-1 for removed boxes) and ``ct_scores`` (B, D), the matched
        center's score (0 where none).
    """
    if centers.shape[1] == 0:
        return torch.full_like(scores, -1), torch.zeros_like(scores)
    region = central_regions(bboxes, small_box_area).unsqueeze(2)  # (B, D, 1, 4)
    cx, cy = centers[..., 0].unsqueeze(1), centers[..., 1].unsqueeze(1)  # (B, 1, N)
    inside = (cx > region[..., 0]) & (cx < region[..., 2]) & (cy > region[..., 1]) & (cy < region[..., 3])
    inside &= labels.unsqueeze(2) == center_labels.unsqueeze(1)
    matched = inside.any(2) & (scores > -1)
    first = inside.to(torch.uint8).argmax(2)  # the first True (argmax returns the first maximal index)
    ct_scores = center_scores.gather(1, first) * matched
    new_scores = torch.where(matched, (2 * scores + ct_scores) / 3, torch.full_like(scores, -1))
    return new_scores, ct_scores


@TASK_UTILS.register_module()
class TripletDecoder(CornerPairDecoder):
    """Boxes of CenterNet keypoint triplets (Duan et al., ICCV 2019).

    Duankaiwen/CenterNet@3ad3a10 ``models/py_utils/kp_utils.py::_decode`` and ``test/coco.py``:

    1. corner pairs exactly as :class:`CornerPairDecoder` (top ``topk`` = 70 corners, (s_tl + s_br) / 2, class /
       embedding / geometry rejection, top ``num_dets``), mapped to original-image pixels (and clipped);
    2. top ``center_topk`` (70) center keypoints after ``local_maximum_kernel`` peak extraction on the sigmoid
       center heatmap, integer cell + offset, mapped to the same pixels (not clipped), in descending score order;
    3. :func:`center_region_check` on the valid pairs; boxes without a center are removed, the rest sorted by
       their new score.

    Before clipping, a pair whose box reaches more than ``outside_margin`` pixels beyond the scaled image (x1 <= -m,
    y1 <= -m, x2 >= W_s + m or y2 >= H_s + m, in pixels of the resized image before padding: W_s, H_s =
    ``ori_shape`` x ``scale_factor``) is rejected (score -1), as ``_rescale_dets`` of Duankaiwen/CenterNet@3ad3a10
    ``test/coco.py`` (m = 5); None keeps them.

    With ``center_check=False`` step 3 is skipped and the centers are returned in the results' ``metainfo``
    (``centers`` (N, 2), ``center_scores``, ``center_labels``) for a test-time merge that checks over all views.

    Args:
        topk (int): corners per type. Defaults to 70.
        center_topk (int): center keypoints. Defaults to 70.
        num_dets (int): pairs kept per image. Defaults to 1000.
        small_box_area (float): n = 3 / n = 5 switch in pixels^2. Defaults to 22500.
        center_check (bool): run step 3. Defaults to True.
        outside_margin (float, optional): the ``_rescale_dets`` rejection margin in pixels of the resized image.
            Defaults to 5.0 (original); None disables it.
        **kwargs: the other :class:`CornerPairDecoder` arguments.

    Raises:
        ValueError: for a non-positive ``center_topk``, a negative ``outside_margin`` (and as
            :class:`CornerPairDecoder`).
    """

    def __init__(self,
                 topk: int = 70,
                 center_topk: int = 70,
                 num_dets: int = 1000,
                 small_box_area: float = SMALL_BOX_AREA,
                 center_check: bool = True,
                 outside_margin: Optional[float] = 5.0,
                 **kwargs) -> None:
        super().__init__(topk=topk, num_dets=num_dets, **kwargs)
        if center_topk < 1:
            raise ValueError(f'center_topk must be >= 1, got {center_topk}')
        self.center_topk = center_topk
        self.small_box_area = float(small_box_area)
        self.center_check = bool(center_check)
        if outside_margin is not None and outside_margin < 0:
            raise ValueError(f'outside_margin must be >= 0 or None, got {outside_margin}')
        self.outside_margin = None if outside_margin is None else float(outside_margin)

    def outside_scaled_image(self, bboxes: Tensor, feat_shape: Sequence[int], batch_img_metas: List[dict]) -> Tensor:
        """Which boxes reach more than ``outside_margin`` pixels beyond the resized image (``_rescale_dets``).

        Args:
            bboxes (Tensor): (B, D, 4) boxes in feature cells.
            feat_shape (Sequence[int]): (H, W) of the maps.
            batch_img_metas (list[dict]): B metas (``ori_shape``; ``scale_factor``, ``border`` when present).

        Returns:
            Tensor: bool (B, D), all False when ``outside_margin`` is None.
        """
        if self.outside_margin is None:
            return bboxes.new_zeros(bboxes.shape[:2], dtype=torch.bool)
        scaled = cells_to_original(bboxes, feat_shape, batch_img_metas, self.ratio, rescale=False, clip=False)
        size = []
        for meta in batch_img_metas:  # per image, not per box
            sx, sy = [float(v) for v in meta.get('scale_factor', (1.0, 1.0))[:2]]
            size.append([meta['ori_shape'][1] * sx, meta['ori_shape'][0] * sy])
        size = bboxes.new_tensor(size).unsqueeze(1)  # (B, 1, 2): (W_s, H_s)
        m = self.outside_margin
        return ((scaled[..., :2] <= -m) | (scaled[..., 2:] >= size + m)).any(-1)

    def decode_centers(self, ct_heat: Tensor, ct_off: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Step 2 in feature cells.

        Args:
            ct_heat (Tensor): (B, C, H, W) center heatmap logits.
            ct_off (Tensor): (B, 2, H, W) offsets (dx, dy) in cells.

        Returns:
            tuple: ``centers`` (B, N, 2) (x, y) in cells, ``scores`` (B, N) descending, ``labels`` (B, N).
        """
        scores, ind, labels, ys, xs = topk_peaks(ct_heat, self.center_topk, self.local_maximum_kernel,
                                                 self.num_candidates)
        off = gather_feat(ct_off, ind)
        return torch.stack([xs + off[..., 0], ys + off[..., 1]], -1), scores, labels

    def decode_triplets(self,
                        tl_heat: Tensor,
                        br_heat: Tensor,
                        ct_heat: Tensor,
                        tl_emb: Tensor,
                        br_emb: Tensor,
                        tl_off: Tensor,
                        br_off: Tensor,
                        ct_off: Tensor,
                        batch_img_metas: List[dict],
                        rescale: bool = True) -> List[InstanceData]:
        """Steps 1-3 for a batch (maps as :meth:`CornerPairDecoder.decode`, plus the center maps).

        Returns:
            list[InstanceData]: per image ``bboxes`` (D_i, 4), ``scores``, ``labels``, ``tl_scores``, ``br_scores``
            and (with the check) ``ct_scores`` (D_i,), sorted by score.
        """
        if len(batch_img_metas) != tl_heat.shape[0]:
            raise ValueError(f'got {len(batch_img_metas)} image metas for a batch of {tl_heat.shape[0]}')
        bboxes, scores, labels, tl_scores, br_scores = self.decode_pairs(tl_heat, br_heat, tl_emb, br_emb, tl_off,
                                                                         br_off)
        feat_shape = tl_heat.shape[-2:]
        scores = torch.where(self.outside_scaled_image(bboxes, feat_shape, batch_img_metas),
                             torch.full_like(scores, -1), scores)
        bboxes = cells_to_original(bboxes, feat_shape, batch_img_metas, self.ratio, rescale, self.clip_border)
        centers, ct_s, ct_lab = self.decode_centers(ct_heat, ct_off)
        centers = cells_to_original(centers.repeat(1, 1, 2), feat_shape, batch_img_metas, self.ratio, rescale,
                                    clip=False)[..., :2]
        if not self.center_check:
            results = split_detections(scores > -1, bboxes=bboxes, scores=scores, labels=labels,
                                       tl_scores=tl_scores, br_scores=br_scores)
            for i, r in enumerate(results):
                r.set_metainfo(dict(centers=centers[i], center_scores=ct_s[i], center_labels=ct_lab[i]))
            return results
        scores, ct_scores = center_region_check(bboxes, scores, labels, centers, ct_s, ct_lab, self.small_box_area)
        scores, order = scores.sort(dim=1, descending=True, stable=True)
        fields = dict(bboxes=bboxes.gather(1, order.unsqueeze(-1).expand(-1, -1, 4)), scores=scores)
        for name, t in (('labels', labels), ('tl_scores', tl_scores), ('br_scores', br_scores),
                        ('ct_scores', ct_scores)):
            fields[name] = t.gather(1, order)
        return split_detections(scores > -1, **fields)

    def decode_outputs(self,
                       maps: Mapping[str, Mapping[str, Tensor]],
                       batch_img_metas: List[dict],
                       rescale: bool = True) -> List[InstanceData]:
        """:meth:`decode_triplets` of one stack of a keypoint head's named outputs (``'top_left'``,
        ``'bottom_right'`` with ``heatmap`` / ``embedding`` / ``offset``; ``'center'`` with ``heatmap`` /
        ``offset``).

        Raises:
            KeyError: naming the missing keypoint type or branch.
        """
        tl, br = _require(maps, 'top_left'), _require(maps, 'bottom_right')
        ct = _require(maps, 'center', ('heatmap', 'offset'))
        return self.decode_triplets(tl['heatmap'], br['heatmap'], ct['heatmap'], tl['embedding'], br['embedding'],
                                    tl['offset'], br['offset'], ct['offset'], batch_img_metas, rescale=rescale)

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f', center_topk={self.center_topk}, small_box_area={self.small_box_area}, '
                f'center_check={self.center_check}, outside_margin={self.outside_margin})')

