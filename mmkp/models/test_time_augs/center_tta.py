"""Test-time augmentation of CenterNet (objects as points): flip-averaged maps, multi-scale soft-NMS merge."""
from typing import Dict, List, Optional, Sequence, Tuple

from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.registry import MODELS

#: What the wrapped head must provide (:class:`mmkp.models.dense_heads.CenterHeatmapHead` does).
HEAD_HOOKS = ('decode_scores', 'nms_detections')


def average_flip_maps(heatmap: Tensor,
                      size: Tensor,
                      offset: Tensor,
                      flip_heatmap: Optional[Tensor] = None,
                      flip_size: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """The flip test of xingyizhou/CenterNet@4c50fd3 ``src/lib/detectors/ctdet.py::CtdetDetector.process``.

    ``scores = (sigmoid(heatmap) + flip_w(sigmoid(flip_heatmap))) / 2``, ``size = (size + flip_w(flip_size)) / 2``
    with ``flip_w`` the mirror along the width (``flip_tensor``); the offset is the unflipped view's only.

    Args:
        heatmap (Tensor): (B, C, H, W) logits of the image.
        size (Tensor): (B, 2, H, W) (w, h) of the image, feature cells.
        offset (Tensor): (B, 2, H, W) (dx, dy) of the image, feature cells.
        flip_heatmap (Tensor, optional): (B, C, H, W) logits of the horizontally flipped image. None: no flip.
        flip_size (Tensor, optional): (B, 2, H, W) sizes of the flipped image; needed with ``flip_heatmap``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: scores (B, C, H, W) in [0, 1], size (B, 2, H, W), offset (B, 2, H, W).

    Raises:
        ValueError: when only one of the flipped maps is given or shapes differ.
    """
    scores = heatmap.sigmoid()
    if flip_heatmap is None and flip_size is None:
        return scores, size, offset
    if flip_heatmap is None or flip_size is None:
        raise ValueError('average_flip_maps: give both flip_heatmap and flip_size, or neither')
    if flip_heatmap.shape != heatmap.shape or flip_size.shape != size.shape:
        raise ValueError(f'average_flip_maps: flipped maps {tuple(flip_heatmap.shape)}, {tuple(flip_size.shape)} '
                         f'differ from {tuple(heatmap.shape)}, {tuple(size.shape)}')
    scores = (scores + flip_heatmap.sigmoid().flip(-1)) / 2
    size = (size + flip_size.flip(-1)) / 2
    return scores, size, offset


def _view_key(samples: Sequence[DetDataSample]) -> tuple:
    """Views of the same scale share, for every image, ``img_shape`` and ``scale_factor``."""
    key = []
    for sample in samples:
        meta = sample.metainfo
        factor = meta.get('scale_factor')
        factor = None if factor is None else tuple(round(float(v), 6) for v in factor[:2])
        key.append((tuple(int(v) for v in meta['img_shape'][:2]), factor))
    return tuple(key)


def _is_flipped(samples: Sequence[DetDataSample]) -> bool:
    """Whether a view is the horizontally flipped image (same for every image of the view).

    Raises:
        ValueError: for a flip that is not horizontal, or views mixing flipped and unflipped images.
    """
    flips = []
    for sample in samples:
        meta = sample.metainfo
        flipped = bool(meta.get('flip', False))
        if flipped and meta.get('flip_direction', 'horizontal') != 'horizontal':
            raise ValueError(f"CenterNetTTAModel: only horizontal flips are supported, got flip_direction="
                             f"{meta.get('flip_direction')!r}")
        flips.append(flipped)
    if len(set(flips)) != 1:
        raise ValueError('CenterNetTTAModel: a view mixes flipped and unflipped images')
    return flips[0]


@MODELS.register_module()
class CenterNetTTAModel(DetTTAModel):
    """Flip and multi-scale testing of CenterNet as the original (xingyizhou/CenterNet@4c50fd3).

    ``src/lib/detectors/base_detector.py::run`` + ``ctdet.py``: at every test scale the image and its horizontal
    mirror go through the network as one batch; the heatmap scores (after sigmoid) and the sizes of the two are
    averaged, the mirror's maps flipped back, the offsets taken from the image only (:func:`average_flip_maps`);
    ``ctdet_decode`` runs once per scale (top 100); the boxes are mapped to original pixels (``ctdet_post_process``
    and ``/ scale``); ``merge_outputs`` concatenates the scales per class and, only with more than one scale (or
    ``--nms``), runs the per-class Gaussian soft-NMS (``soft_nms(Nt=0.5, method=2)``: sigma 0.5, discard below
    0.001, areas with +1), then keeps the best 100.

    Here the views come from mmdet's ``TestTimeAug`` (e.g. ``[[Resize(scale_factor=s) for s in scales],
    [RandomFlip(prob=1.), RandomFlip(prob=0.)], [RandomCenterCropPad(test_mode=True, ...)], ...]``). Views are paired
    by scale (same ``img_shape`` and ``scale_factor`` for every image); each scale needs one unflipped view and at
    most one horizontally flipped one. The head decodes with the unflipped view's metas (``border``,
    ``scale_factor``) through ``decode_scores`` and merges through ``nms_detections``.

    The flipped view differs from the original's mirrored canvas by one input pixel for odd image widths: mmdet
    flips the image before ``RandomCenterCropPad`` centres it on the padded canvas (the original mirrors the
    padded canvas). The scale differs by rounding: mmdet's ``Resize`` rounds the resized size, the original's
    affine warp keeps ``int(h * s)``.

    Args:
        tta_cfg (dict): ``nms`` (default ``dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001,
            method='gaussian', offset=1)``, None: none), ``nms_single_scale`` (apply ``nms`` with one scale too,
            the original's ``--nms``; default False) and ``max_per_img`` (100).
        **kwargs: ``module`` (the detector) and ``data_preprocessor``, as :class:`mmengine.model.BaseTTAModel`.

    Raises:
        TypeError: when the wrapped detector's head lacks :data:`HEAD_HOOKS`.
        ValueError: when the views cannot be paired as above.
    """

    DEFAULT_NMS = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1)

    def _split_views(self, data) -> list:
        if isinstance(data, dict):
            num_views = len(data[next(iter(data))])
            return [{key: value[idx] for key, value in data.items()} for idx in range(num_views)]
        if isinstance(data, (tuple, list)):
            return [[item[idx] for item in data] for idx in range(len(data[0]))]
        raise TypeError(f'data given by the dataloader should be a dict, tuple or list, got {type(data)}')

    def test_step(self, data) -> List[DetDataSample]:
        """Flip-averaged decoding per scale, then the multi-scale merge, per image.

        Args:
            data (dict | tuple | list): the augmented batch of ``TestTimeAug`` (one entry per view).

        Returns:
            list[DetDataSample]: one prediction per image, ``pred_instances`` in original-image pixels.
        """
        head = self.module.bbox_head
        missing = [hook for hook in HEAD_HOOKS if not callable(getattr(head, hook, None))]
        if missing:
            raise TypeError(f'{type(self).__name__} needs a head with {HEAD_HOOKS} (e.g. CenterHeatmapHead); '
                            f'{type(head).__name__} lacks {missing}')
        groups: Dict[tuple, dict] = {}
        for view in self._split_views(data):  # one forward per augmented view, as BaseTTAModel
            view = self.module.data_preprocessor(view, False)
            samples = view['data_samples']
            heatmaps, sizes, offsets = head(self.module.extract_feat(view['inputs']))
            slot = 'flip' if _is_flipped(samples) else 'orig'
            group = groups.setdefault(_view_key(samples), {})
            if slot in group:
                raise ValueError(f'CenterNetTTAModel: two {slot} views at the same scale {_view_key(samples)}')
            group[slot] = (samples, heatmaps[-1], sizes[-1], offsets[-1])
        per_scale = []
        for key, group in groups.items():
            if 'orig' not in group:
                raise ValueError(f'CenterNetTTAModel: no unflipped view at scale {key}')
            samples, heat, size, offset = group['orig']
            flip_heat, flip_size = (group['flip'][1], group['flip'][2]) if 'flip' in group else (None, None)
            scores, size, offset = average_flip_maps(heat, size, offset, flip_heat, flip_size)
            metas = [sample.metainfo for sample in samples]
            per_scale.append((samples, head.decode_scores(scores, size, offset, metas, rescale=True)))
        return self.merge_scales([results for _, results in per_scale], per_scale[0][0])

    def merge_scales(self, results: List[List[InstanceData]], samples: List[DetDataSample]) -> List[DetDataSample]:
        """``merge_outputs``: concatenate the scales of each image, soft-NMS (more than one scale), top 100.

        Args:
            results (list[list[InstanceData]]): per scale, per image detections in original pixels.
            samples (list[DetDataSample]): the data samples of one view, which receive ``pred_instances``.

        Returns:
            list[DetDataSample]: ``samples`` with ``pred_instances``.
        """
        cfg = self.tta_cfg or {}
        nms_cfg = cfg.get('nms', self.DEFAULT_NMS)
        if len(results) == 1 and not cfg.get('nms_single_scale', False):
            nms_cfg = None
        max_per_img = cfg.get('max_per_img', 100)
        head = self.module.bbox_head
        for idx, sample in enumerate(samples):
            merged = InstanceData.cat([scale[idx] for scale in results])
            sample.pred_instances = head.nms_detections(merged, nms_cfg, max_per_img)
        return samples

    def _merge_single_sample(self, data_samples: List[DetDataSample]) -> DetDataSample:
        """Unused: :meth:`test_step` merges from the maps, not from per-view detections."""
        raise NotImplementedError('CenterNetTTAModel merges in test_step (from the maps)')
