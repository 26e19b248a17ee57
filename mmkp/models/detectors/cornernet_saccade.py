"""CornerNet-Saccade's test procedure: downsized views, attention -> locations, zoomed crops, merge."""
import copy
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors.single_stage import SingleStageDetector
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.ops import saccade_crop
from mmkp.registry import MODELS
from ..dense_heads.keypoint_head import KeypointMaps

#: ``configs/CornerNet_Saccade.json`` and ``core/dbs/detection.py`` of princeton-vl/CornerNet-Lite@6a54505.
DEFAULT_SACCADE = dict(
    init_sizes=(192, 255),
    att_threshold=0.3,
    att_zooms=(1, 2, 4),
    att_strides=(16, 8, 4),
    att_nms_kernel=3,
    max_view_zoom=2.0,
    max_zoom=4.0,
    coarse_threshold=0.3,
    ref_threshold=0.5,
    ref_bounds=(96, 32),
    ref_sizes=(192, 64, 24),
    location_distance=16.0,
    location_zoom_ratio=(0.8, 1.2),
    k_max=30,
    crop_size=255,
    crop_batch=32)


def crop_to_original(bboxes: Tensor, transform: Tensor) -> Tensor:
    """Boxes (K, 4) in crop pixels -> original-image pixels: ``orig = crop / scale + offset``.

    Args:
        bboxes (Tensor): (K, 4) (x1, y1, x2, y2) in pixels of the crop.
        transform (Tensor): (3,) ``[offset_y, offset_x, scale]`` of :func:`mmkp.ops.saccade_crop`.

    Returns:
        Tensor: (K, 4) in original-image pixels (princeton-vl/CornerNet-Lite@6a54505
        ``core/test/cornernet_saccade.py::remap_dets_``, with the op's exact scale).
    """
    off_y, off_x, scale = transform.unbind(-1)
    offset = torch.stack([off_x, off_y, off_x, off_y])
    return bboxes / scale + offset


def location_nms(locations: Tensor, distance: float = 16.0, ratio_range: Tuple[float, float] = (0.8, 1.2)) -> Tensor:
    """Greedy suppression of crop locations (``core/test/cornernet_saccade.py::location_nms``).

    Sorted by score (descending, stable), each kept location drops every remaining one whose
    ``min(|dy|, |dx|) <= distance / zoom_kept`` and whose zoom ratio ``zoom_kept / zoom`` lies in ``ratio_range``
    (closed). The minimum of the two axis distances, not the Euclidean one, as the original.

    Args:
        locations (Tensor): (N, 4) ``[y, x, zoom, score]`` in original-image pixels.
        distance (float): the original's ``thresh``. Defaults to 16.
        ratio_range (tuple[float, float]): zoom ratios that count as the same scale. Defaults to (0.8, 1.2).

    Returns:
        Tensor: (M, 4) the kept locations, best first.
    """
    if len(locations) == 0:
        return locations
    order = torch.sort(locations[:, 3], descending=True, stable=True).indices
    locs = locations[order]
    ys, xs, zooms = locs[:, 0], locs[:, 1], locs[:, 2]
    dist = torch.minimum((ys[:, None] - ys[None]).abs(), (xs[:, None] - xs[None]).abs())
    ratio = zooms[:, None] / zooms[None]
    suppress = (dist <= distance / zooms[:, None]) & (ratio >= ratio_range[0]) & (ratio <= ratio_range[1])
    alive = torch.ones(len(locs), dtype=torch.bool, device=locs.device)
    keep = []
    # sequential by definition (a location suppressed by a dropped one may survive); N is at most a few hundred
    for i in range(len(locs)):
        if alive[i]:
            keep.append(i)
            alive &= ~suppress[i]
    return locs[keep]


def reference_locations(bboxes: Tensor, scores: Tensor, threshold: float, bounds: Sequence[float],
                        sizes: Sequence[float]) -> Tensor:
    """Locations from coarse detections (``get_ref_locs``): centre, a zoom that brings the long side to a size.

    Boxes with score > ``threshold``; long side m > bounds[0] -> zoom sizes[0] / m, bounds[1] < m <= bounds[0] ->
    sizes[1] / m, else sizes[2] / m; score 1 (they rank before attention locations).

    Args:
        bboxes (Tensor): (N, 4) in original-image pixels.
        scores (Tensor): (N,).
        threshold (float): 0.5 in the original.
        bounds (Sequence[float]): (96, 32).
        sizes (Sequence[float]): (192, 64, 24).

    Returns:
        Tensor: (M, 4) ``[y, x, zoom, 1]``.
    """
    b = bboxes[scores > threshold]
    long_side = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    small = torch.where(long_side > bounds[1], b.new_tensor(float(sizes[1])), b.new_tensor(float(sizes[2])))
    target = torch.where(long_side > bounds[0], b.new_tensor(float(sizes[0])), small)
    zoom = target / long_side.clamp(min=1e-6)
    return torch.stack([(b[:, 1] + b[:, 3]) / 2, (b[:, 0] + b[:, 2]) / 2, zoom, torch.ones_like(zoom)], -1)


@MODELS.register_module()
class CornerNetSaccade(SingleStageDetector):
    """CornerNet-Saccade detector: mmdet's single-stage training, and the saccade test of the original.

    Training is mmdet's ``SingleStageDetector`` (backbone -> :class:`SaccadeHead` losses). Testing with
    ``test_cfg.saccade`` (keys of :data:`DEFAULT_SACCADE`; without it: the head's one-pass predict) follows
    princeton-vl/CornerNet-Lite@6a54505 ``core/test/cornernet_saccade.py::cornernet_saccade_inference``
    (DETECTORS.md 4.6) with one attention iteration (``att_thresholds [0.3]``):

    1. views: per size of ``init_sizes``, a crop centred on the image centre with zoom ``size / max(H, W)``;
    2. the network on every view (attention maps after a sigmoid and a ``att_nms_kernel`` max-pool peak test);
       attention cells above ``att_threshold`` become locations (cell * stride mapped back to the image, inside the
       image), zoom ``att_zooms[i] * view zoom`` (1 / 2 / 4 for the large / medium / small map), skipped when the
       view's zoom exceeds ``max_view_zoom`` or the new zoom ``max_zoom``;
    3. the views' detections (decoder of ``test_cfg.decoder``, border rejection per its ``reject_border``) mapped
       back; those above ``coarse_threshold`` are kept (and are part of the output);
    4. those above ``ref_threshold`` become locations (:func:`reference_locations`), score 1;
    5. :func:`location_nms`, then the first ``k_max`` locations;
    6. zoomed crops (:func:`mmkp.ops.saccade_crop`), the network without attention, decoding, boxes mapped back
       (:func:`crop_to_original`), those scored above -1 kept;
    7. merge with the coarse ones, the head's ``nms_detections`` (per-class Gaussian soft-NMS, sigma 0.7 in the
       configs) and the top ``max_per_img``.

    Beyond the original: every crop of every image of the batch goes through the network in chunks of
    ``crop_batch`` on the input's device, so batches of several images work (each image reads its own metas).
    Crops are cut from the normalised images with the value of a black pixel outside the image (the original crops
    the 0-1 image with zeros, then normalises); each image without the batch's padding (its ``img_shape``).

    Args:
        backbone, bbox_head, neck, train_cfg, test_cfg, data_preprocessor, init_cfg: as mmdet's
            ``SingleStageDetector``; ``test_cfg.saccade`` (dict, optional) holds the saccade settings.
    """

    def __init__(self,
                 backbone: ConfigType,
                 bbox_head: ConfigType,
                 neck: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        saccade = (test_cfg or {}).get('saccade', None)
        if saccade is not None:
            unknown = sorted(set(saccade) - set(DEFAULT_SACCADE))
            if unknown:
                raise ValueError(f'test_cfg.saccade has unknown keys {unknown}; known: {sorted(DEFAULT_SACCADE)}')
            merged = copy.deepcopy(DEFAULT_SACCADE)
            merged.update(saccade)
            saccade = merged
            if saccade['crop_batch'] < 1 or saccade['k_max'] < 0:
                raise ValueError('test_cfg.saccade.crop_batch must be >= 1 and k_max >= 0')
        self.saccade_cfg = saccade

    # ----------------------------------------------------------------------------------------------------------
    def _black(self, images: Tensor) -> Tensor:
        """(1, C, 1, 1) value of a black (0) pixel after the data preprocessor's normalisation."""
        pre = self.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            return ((0 - pre.mean) / pre.std).view(1, -1, 1, 1).to(images)
        return images.new_zeros((1, images.shape[1], 1, 1))

    def _run_crops(self, crops: Tensor, with_attention: bool) -> Tuple[List[InstanceData], List[Dict[str, Tensor]]]:
        """The network on crops (chunks of ``crop_batch``): decoded boxes in crop pixels, attention maps."""
        cfg, head = self.saccade_cfg, self.bbox_head
        size = cfg['crop_size']
        dets, atts = [], []
        for start in range(0, len(crops), cfg['crop_batch']):
            chunk = crops[start:start + cfg['crop_batch']]
            x = self.extract_feat(chunk)
            feats, merges = head.split_inputs(x)
            maps = KeypointMaps.from_stacks([head.forward_single(feats[-1], -1)])
            metas = [dict(img_shape=(size, size), batch_input_shape=(size, size), pad_shape=(size, size))
                     for _ in range(len(chunk))]
            dets += head.decoder.decode_outputs(maps.stack(-1), metas, rescale=False)
            if with_attention:
                k = cfg['att_nms_kernel']
                logits = head.forward_attention(merges[-1], -1)
                peaks = {}
                for name, value in logits.items():
                    prob = value.sigmoid()
                    pooled = F.max_pool2d(prob, k, stride=1, padding=(k - 1) // 2)
                    peaks[name] = prob * (pooled == prob)
                atts += [{name: v[i, 0] for name, v in peaks.items()} for i in range(len(chunk))]
        return dets, atts

    def _crop(self, images: Sequence[Tensor], black: Tensor, centers: Tensor, zooms: Tensor,
              image_inds: Tensor) -> Tuple[Tensor, Tensor]:
        """Crops (K, C, S, S) and their transforms (K, 3), in the order of the locations.

        Each image is cropped from its own (1, C, h, w) tensor (``img_shape``, without the batch padding), so that
        the interpolation at its border is the one of a one-image run; one :func:`saccade_crop` call per image.
        """
        size = self.saccade_cfg['crop_size']
        crops = black.new_zeros((len(centers), black.shape[1], size, size))
        transforms = black.new_zeros((len(centers), 3))
        for i, image in enumerate(images):
            sel = (image_inds == i).nonzero(as_tuple=True)[0]
            if len(sel):
                c, t = saccade_crop(image - black, centers[sel], zooms[sel], size)
                crops[sel], transforms[sel] = c + black, t.to(transforms.dtype)  # t: float32 for any image dtype
        return crops, transforms

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList, rescale: bool = True) -> SampleList:
        """Saccade detections (or the head's one-pass ones without ``test_cfg.saccade``).

        Args:
            batch_inputs (Tensor): (N, 3, H, W) normalised images (the original image, not resized, for the
                original's protocol; a Resize is undone through ``scale_factor``).
            batch_data_samples (list[DetDataSample]): metas (``img_shape``, ``scale_factor``).
            rescale (bool): boxes in original-image pixels. Defaults to True.

        Returns:
            list[DetDataSample]: with ``pred_instances`` (``bboxes``, ``scores``, ``labels``).
        """
        if self.saccade_cfg is None:
            return super().predict(batch_inputs, batch_data_samples, rescale=rescale)
        results = self.saccade_predict(batch_inputs, [s.metainfo for s in batch_data_samples], rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def saccade_predict(self, batch_inputs: Tensor, batch_img_metas: List[dict],
                        rescale: bool = True) -> List[InstanceData]:
        """Steps 1-7 of the class docstring for a batch; boxes in original pixels (``rescale``) or input pixels."""
        cfg, head = self.saccade_cfg, self.bbox_head
        device, num_imgs = batch_inputs.device, len(batch_img_metas)
        black = self._black(batch_inputs)
        sizes = [tuple(int(v) for v in meta['img_shape'][:2]) for meta in batch_img_metas]
        images = [batch_inputs[i:i + 1, :, :h, :w] for i, (h, w) in enumerate(sizes)]
        # 1. views
        view_img = torch.arange(num_imgs, device=device).repeat_interleave(len(cfg['init_sizes']))
        centers = torch.tensor([[h // 2, w // 2] for h, w in sizes for _ in cfg['init_sizes']], dtype=torch.float32,
                               device=device)
        zooms = torch.tensor([s / max(h, w) for h, w in sizes for s in cfg['init_sizes']], dtype=torch.float32,
                             device=device)
        crops, transforms = self._crop(images, black, centers, zooms, view_img)
        view_dets, view_atts = self._run_crops(crops, with_attention=True)
        # 2.-5. locations per image
        coarse = [[] for _ in range(num_imgs)]
        att_locs = [[] for _ in range(num_imgs)]
        for v, (det, att) in enumerate(zip(view_dets, view_atts)):
            i = int(view_img[v])
            h, w = sizes[i]
            det = det.clone()
            det.bboxes = crop_to_original(det.bboxes, transforms[v])
            coarse[i].append(det[det.scores > cfg['coarse_threshold']])
            off_y, off_x, scale = transforms[v].tolist()
            zoom = float(zooms[v])
            for name, stride, att_zoom in zip(head.attention_scales, cfg['att_strides'], cfg['att_zooms']):
                next_zoom = att_zoom * zoom
                if zoom > cfg['max_view_zoom'] or next_zoom > cfg['max_zoom']:
                    continue
                cells = (att[name] > cfg['att_threshold']).nonzero()
                ys = cells[:, 0].float() * stride / scale + off_y
                xs = cells[:, 1].float() * stride / scale + off_x
                score = att[name][cells[:, 0], cells[:, 1]]
                inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
                att_locs[i].append(torch.stack([ys, xs, torch.full_like(ys, next_zoom), score], -1)[inside])
        crop_centers, crop_zooms, crop_img = [], [], []
        for i in range(num_imgs):
            coarse[i] = InstanceData.cat(coarse[i])
            locs = torch.cat(att_locs[i] + [reference_locations(coarse[i].bboxes, coarse[i].scores,
                                                                cfg['ref_threshold'], cfg['ref_bounds'],
                                                                cfg['ref_sizes'])])
            locs = location_nms(locs, cfg['location_distance'], cfg['location_zoom_ratio'])[:cfg['k_max']]
            crop_centers.append(locs[:, :2])
            crop_zooms.append(locs[:, 2])
            crop_img.append(torch.full((len(locs), ), i, dtype=torch.long, device=device))
        # 6. zoomed crops of every image, one batch
        crop_img = torch.cat(crop_img)
        crops, transforms = self._crop(images, black, torch.cat(crop_centers), torch.cat(crop_zooms), crop_img)
        crop_dets, _ = self._run_crops(crops, with_attention=False)
        per_image = [[c] for c in coarse]
        for k, det in enumerate(crop_dets):
            det = det.clone()
            det.bboxes = crop_to_original(det.bboxes, transforms[k])
            per_image[int(crop_img[k])].append(det)
        # 7. merge
        results = []
        for i, dets in enumerate(per_image):
            merged = InstanceData.cat(dets)
            if rescale and 'scale_factor' in batch_img_metas[i]:
                sx, sy = batch_img_metas[i]['scale_factor'][:2]
                merged.bboxes = merged.bboxes / merged.bboxes.new_tensor([sx, sy, sx, sy])
            results.append(head.nms_detections(merged))
        return results
