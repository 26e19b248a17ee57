"""Post-processing of the ONNX graphs of :mod:`mmkp.deployment.export`: graph outputs -> boxes in original pixels.

What stays outside the graph because it needs the image metas or is data-dependent: the map from feature cells to
input pixels (batch input size / feature size, or the decoder's ``ratio``), the ``border`` of a crop-pad test
pipeline, ``scale_factor``, clipping to ``ori_shape`` / ``img_shape``, the triplets' outside-image rejection and
center-region check, score thresholds, (soft-)NMS and ``max_per_img``. Every step is the code the PyTorch
detector runs (the head's decoder, ``nms_detections`` / ``_post_process`` / ``_bbox_post_process``, the helpers of
:mod:`mmkp.models.utils.heatmap`), on the head built from the same config on the ``meta`` device (no weights).
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from mmkp.models.task_modules.coders.triplet_decoder import center_region_check
from mmkp.models.utils.heatmap import cells_to_original, split_detections
from .export import FAMILIES, output_names

ArrayLike = Union[np.ndarray, Tensor]


def _as_tensor(value: ArrayLike) -> Tensor:
    return value if isinstance(value, Tensor) else torch.from_numpy(np.asarray(value))


class ONNXPostProcessor:
    """Turn the outputs of an exported mmkp graph into per-image detections, as the detector's ``predict``.

    Args:
        config (str | mmengine.Config): the config the graph was exported from (its ``model.test_cfg`` and
            ``bbox_head`` settings are used).
        family (str, optional): :data:`mmkp.deployment.export.FAMILIES`; None detects it from the head.

    Raises:
        NotImplementedError: a head without export.
    """

    def __init__(self, config: Any, family: Optional[str] = None) -> None:
        from mmkp.converters.core import build_model_from_config
        from .export import detect_family
        model = build_model_from_config(config, device='meta')
        self.head = model.bbox_head
        self.family = family or detect_family(model)
        if self.family not in FAMILIES:
            raise ValueError(f'family must be one of {FAMILIES}, got {self.family!r}')
        num_levels = len(self.head.strides) if self.family == 'fcos' else 0
        self.output_names = output_names(self.family, num_levels)

    def __call__(self,
                 outputs: Union[Sequence[ArrayLike], Mapping[str, ArrayLike]],
                 batch_img_metas: List[dict],
                 rescale: bool = True) -> List[InstanceData]:
        """Detections of a batch.

        Args:
            outputs (list | dict): the graph's outputs, in order (what ``onnxruntime``'s ``run(None, ...)``
                returns) or by name; numpy arrays or tensors.
            batch_img_metas (list[dict]): B metas as the test pipeline writes them (``ori_shape``, ``img_shape``,
                ``scale_factor``; ``border`` for a crop-pad pipeline; ``batch_input_shape``, else the graph's input
                size must be given as ``pad_shape`` / ``img_shape``).
            rescale (bool): boxes in original-image pixels (True) or resized-image pixels. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes`` (K, 4) (x1, y1, x2, y2), ``scores`` (K,), ``labels`` (K,),
            the same as the detector's ``predict(..., rescale=rescale)`` gives.

        Raises:
            KeyError: an output name missing from a dict.
            ValueError: a wrong number of outputs or of metas.
        """
        if isinstance(outputs, Mapping):
            missing = [n for n in self.output_names if n not in outputs]
            if missing:
                raise KeyError(f'graph outputs {missing} missing (have {sorted(outputs)})')
            named = {n: _as_tensor(outputs[n]) for n in self.output_names}
        else:
            if len(outputs) != len(self.output_names):
                raise ValueError(f'{self.family} graph has {len(self.output_names)} outputs '
                                 f'({self.output_names}), got {len(outputs)}')
            named = {n: _as_tensor(o) for n, o in zip(self.output_names, outputs)}
        batch = next(iter(named.values())).shape[0]
        if len(batch_img_metas) != batch:
            raise ValueError(f'got {len(batch_img_metas)} image metas for a batch of {batch}')
        with torch.no_grad():
            return getattr(self, f'_{self.family}')(named, batch_img_metas, rescale)

    def _centernet(self, out: Dict[str, Tensor], metas: List[dict], rescale: bool) -> List[InstanceData]:
        """:meth:`CenterHeatmapDecoder.decode` after the peaks, then :meth:`CenterHeatmapHead._post_process`."""
        dec = self.head.decoder
        bboxes = cells_to_original(out['det_bboxes'], out['heatmap'].shape[-2:], metas, dec.ratio, rescale,
                                   dec.clip_border)
        results = split_detections(None, bboxes=bboxes, scores=out['det_scores'], labels=out['det_labels'])
        cfg = self.head.test_cfg or ConfigDict()
        return [self.head._post_process(r, cfg, True) for r in results]

    def _cornernet(self, out: Dict[str, Tensor], metas: List[dict], rescale: bool) -> List[InstanceData]:
        """:meth:`CornerPairDecoder.decode` after :meth:`~CornerPairDecoder.decode_pairs`, then soft-NMS."""
        dec = self.head.decoder
        bboxes = cells_to_original(out['det_bboxes'], out['tl_heatmap'].shape[-2:], metas, dec.ratio, rescale,
                                   dec.clip_border)
        scores = out['det_scores']
        results = split_detections(scores > -1, bboxes=bboxes, scores=scores, labels=out['det_labels'],
                                   tl_scores=out['det_tl_scores'], br_scores=out['det_br_scores'])
        return [self.head.nms_detections(r) for r in results]

    def _triplet(self, out: Dict[str, Tensor], metas: List[dict], rescale: bool) -> List[InstanceData]:
        """:meth:`TripletDecoder.decode_triplets` after the pairs and centers, then soft-NMS."""
        dec = self.head.decoder
        feat_shape = out['tl_heatmap'].shape[-2:]
        cells, scores, labels = out['det_bboxes'], out['det_scores'], out['det_labels']
        scores = torch.where(dec.outside_scaled_image(cells, feat_shape, metas), torch.full_like(scores, -1), scores)
        bboxes = cells_to_original(cells, feat_shape, metas, dec.ratio, rescale, dec.clip_border)
        centers = cells_to_original(out['centers'].repeat(1, 1, 2), feat_shape, metas, dec.ratio, rescale,
                                    clip=False)[..., :2]
        fields = dict(labels=labels, tl_scores=out['det_tl_scores'], br_scores=out['det_br_scores'])
        if not dec.center_check:
            results = split_detections(scores > -1, bboxes=bboxes, scores=scores, **fields)
        else:
            scores, ct_scores = center_region_check(bboxes, scores, labels, centers, out['center_scores'],
                                                    out['center_labels'], dec.small_box_area)
            scores, order = scores.sort(dim=1, descending=True, stable=True)
            fields['ct_scores'] = ct_scores
            sorted_fields = {name: t.gather(1, order) for name, t in fields.items()}
            results = split_detections(scores > -1, bboxes=bboxes.gather(1, order.unsqueeze(-1).expand(-1, -1, 4)),
                                       scores=scores, **sorted_fields)
        return [self.head.nms_detections(r) for r in results]

    def _fcos(self, out: Dict[str, Tensor], metas: List[dict], rescale: bool) -> List[InstanceData]:
        """The end of :meth:`FCOSPointHead.predict_by_feat` (:meth:`FCOSPointHead.candidates_to_results`)."""
        cfg = self.head.test_cfg
        for i, meta in enumerate(metas):
            if meta.get('img_shape') is None:
                raise ValueError(f'batch_img_metas[{i}] has no img_shape (boxes are clipped to it)')
            if rescale and meta.get('scale_factor') is None:
                raise ValueError(f'rescale=True needs scale_factor in batch_img_metas[{i}]')
        return self.head.candidates_to_results(out['cand_bboxes'], out['cand_valid'], out['cand_cls_scores'],
                                               out['cand_centerness'], out['cand_labels'], metas, cfg, rescale)


def postprocess(config: Any,
                outputs: Union[Sequence[ArrayLike], Mapping[str, ArrayLike]],
                batch_img_metas: List[dict],
                rescale: bool = True) -> List[InstanceData]:
    """One-call form of :class:`ONNXPostProcessor` (builds it each time; keep the object for many batches)."""
    return ONNXPostProcessor(config)(outputs, batch_img_metas, rescale)
