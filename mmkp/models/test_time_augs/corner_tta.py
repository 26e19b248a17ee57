"""Test-time augmentation of CornerNet: raw detections of every view pooled, then one soft-NMS."""
import inspect
from typing import List

import torch
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_flip
from mmengine.structures import InstanceData

from mmkp.registry import MODELS
from ..utils.soft_nms_merge import corner_nms


@MODELS.register_module()
class CornerNetTTAModel(DetTTAModel):
    """Flip and multi-scale testing of CornerNet as the original (DETECTORS.md 2.11, 3.4).

    CornerNet-Lite ``core/test/cornernet.py::cornernet_inference`` decodes every view (image and flipped image, at
    every scale) into up to ``num_dets`` raw pairs, maps them back to the original image, concatenates them, and
    runs one per-class soft-NMS (or ``soft_nms_merge`` for multi-scale) over the pool, then keeps the best
    ``max_per_image``. mmdet's :class:`DetTTAModel` instead merges views that were each already soft-NMS'ed and cut
    to 100 boxes. This model runs the detector of each view with its NMS off (``bbox_head.predict(...,
    with_nms=False)``, which :class:`CornerPoolHead` supports), un-flips the boxes with mmdet's ``bbox_flip``
    (``flip`` / ``flip_direction`` metas), pools them and applies ``tta_cfg.nms`` and ``tta_cfg.max_per_img`` with
    :func:`mmkp.models.utils.soft_nms_merge.corner_nms`.

    Flip differs from the original by at most one input pixel: the original flips the zero-padded canvas
    (``x <- out_width - x`` on the maps), mmdet's pipeline flips the image before padding (the flip must come before
    ``RandomCenterCropPad``, whose ``border`` meta is not flipped); with an even image width the padded flipped image
    is one pixel left of the mirror of the original's canvas. Each mapping is exact for its own input.

    Args:
        tta_cfg (dict): ``nms`` (e.g. ``dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001,
            method='gaussian', offset=1)`` or ``dict(type='soft_nms_merge', ..., weight_exp=10)``) and
            ``max_per_img`` (100).
        **kwargs: ``module`` (the detector) and ``data_preprocessor``, as :class:`mmengine.model.BaseTTAModel`.

    Raises:
        TypeError: when the wrapped detector's head cannot return raw detections.
    """

    def test_step(self, data):
        """Raw detections of every view, merged per image.

        Args:
            data (dict | tuple | list): the augmented batch of ``TestTimeAug`` (one entry per view).

        Returns:
            list[DetDataSample]: one merged prediction per image.
        """
        if isinstance(data, dict):
            num_views = len(data[next(iter(data))])
            views = [{key: value[idx] for key, value in data.items()} for idx in range(num_views)]
        elif isinstance(data, (tuple, list)):
            views = [[item[idx] for item in data] for idx in range(len(data[0]))]
        else:
            raise TypeError(f'data given by the dataloader should be a dict, tuple or list, got {type(data)}')
        head = self.module.bbox_head
        if 'with_nms' not in inspect.signature(head.predict).parameters:
            raise TypeError(f'{type(self).__name__} needs a head whose predict() takes with_nms (e.g. '
                            f'CornerPoolHead), got {type(head).__name__}')
        predictions = []
        for view in views:  # one forward per augmented view, as BaseTTAModel
            view = self.module.data_preprocessor(view, False)
            feats = self.module.extract_feat(view['inputs'])
            samples = view['data_samples']
            results = head.predict(feats, samples, rescale=True, with_nms=False)
            for sample, result in zip(samples, results):
                sample.pred_instances = result
            predictions.append(samples)
        return self.merge_preds(list(zip(*predictions)))

    def _merge_single_sample(self, data_samples: List[DetDataSample]) -> DetDataSample:
        """Un-flip, pool and soft-NMS the raw detections of the views of one image."""
        pooled = []
        for sample in data_samples:
            pred = sample.pred_instances
            bboxes = pred.bboxes
            if sample.metainfo.get('flip', False):
                bboxes = bbox_flip(bboxes, sample.metainfo['ori_shape'], sample.metainfo['flip_direction'])
            fields = dict(bboxes=bboxes, scores=pred.scores, labels=pred.labels)
            for key in ('tl_scores', 'br_scores'):
                if key in pred:
                    fields[key] = pred.get(key)
            pooled.append(InstanceData(**fields))
        merged = InstanceData.cat(pooled)
        nms_cfg = self.tta_cfg.get('nms', None) if self.tta_cfg else None
        max_per_img = self.tta_cfg.get('max_per_img', 100) if self.tta_cfg else 100
        result = data_samples[0]
        result.pred_instances = corner_nms(merged, nms_cfg, max_per_img)
        return result
