"""Test-time augmentation of the corner family: raw detections of every view pooled by the head, then one soft-NMS."""
import inspect
from typing import List

from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample

from mmkp.registry import MODELS

#: What the wrapped head must provide (:class:`mmkp.models.dense_heads.CornerPoolHead` does).
HEAD_HOOKS = ('unflip_detections', 'merge_view_detections', 'nms_detections')


@MODELS.register_module()
class CornerNetTTAModel(DetTTAModel):
    """Flip and multi-scale testing of CornerNet as the original, for every head of the corner family.

    princeton-vl/CornerNet-Lite@6a54505 ``core/test/cornernet.py::cornernet_inference`` decodes every view (image and
    flipped image, at every scale) into up to ``num_dets`` raw pairs, maps them back to the original image,
    concatenates them, and runs one per-class soft-NMS (or ``soft_nms_merge`` for multi-scale) over the pool, then
    keeps the best ``max_per_image``. mmdet's :class:`DetTTAModel` instead merges views that were each already
    soft-NMS'ed and cut to 100 boxes. This model runs the detector of each view with its NMS off
    (``bbox_head.predict(..., with_nms=False)``), then per image asks the head:

    1. ``unflip_detections(result, meta)``: each view's raw detections, with every field it carries, back onto the
       unflipped image (boxes through mmdet's ``bbox_flip``, ``flip`` / ``flip_direction`` metas; a triplet head also
       un-flips its center keypoints);
    2. ``merge_view_detections(results, metas)``: the pool of the views (concatenation; the keypoint-triplet head
       runs its center-region check there, after the views are pooled and before NMS);
    3. ``nms_detections(merged, tta_cfg.nms, tta_cfg.max_per_img)``.

    Flip differs from the original by at most one input pixel: the original flips the zero-padded canvas
    (``x <- out_width - x`` on the maps), mmdet's pipeline flips the image before padding (the flip must come before
    ``RandomCenterCropPad``, whose ``border`` meta is not flipped); with an even image width the padded flipped image
    is one pixel left of the mirror of the original's canvas. Each mapping is exact for its own input.

    Args:
        tta_cfg (dict): ``nms`` (e.g. ``dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001,
            method='gaussian', offset=1)`` or ``dict(type='soft_nms_merge', ..., weight_exp=10)``; None or absent: no
            NMS) and ``max_per_img`` (100).
        **kwargs: ``module`` (the detector) and ``data_preprocessor``, as :class:`mmengine.model.BaseTTAModel`.

    Raises:
        TypeError: when the wrapped detector's head cannot return raw detections or lacks the hooks above.
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
        missing = [hook for hook in HEAD_HOOKS if not callable(getattr(head, hook, None))]
        if 'with_nms' not in inspect.signature(head.predict).parameters or missing:
            raise TypeError(f'{type(self).__name__} needs a head whose predict() takes with_nms and that has '
                            f'{HEAD_HOOKS} (e.g. CornerPoolHead); {type(head).__name__} lacks '
                            f'{missing or ["with_nms"]}')
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
        """Un-flip, pool and soft-NMS the raw detections of the views of one image (through the head's hooks)."""
        head = self.module.bbox_head
        metas = [sample.metainfo for sample in data_samples]
        views = [head.unflip_detections(sample.pred_instances, meta) for sample, meta in zip(data_samples, metas)]
        merged = head.merge_view_detections(views, metas)
        nms_cfg = self.tta_cfg.get('nms', None) if self.tta_cfg else None
        max_per_img = self.tta_cfg.get('max_per_img', 100) if self.tta_cfg else 100
        result = data_samples[0]
        result.pred_instances = head.nms_detections(merged, nms_cfg, max_per_img)
        return result
