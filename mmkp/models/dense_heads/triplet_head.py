"""CenterNet keypoint-triplet head: :class:`CornerPoolHead` with a center keypoint and the center-region check in
the test-time merge of views."""
import copy
from typing import List, Optional

import torch
from mmdet.utils import ConfigType, InstanceList, OptConfigType
from mmengine.structures import InstanceData

from mmkp.registry import MODELS
from ..task_modules.coders.triplet_decoder import center_region_check
from .corner_pool_head import CornerPoolHead
from .keypoint_head import KeypointMaps

#: Targets of Duankaiwen/CenterNet@3ad3a10 ``sample/coco.py::kp_detection``: the uncorrected radius formula with
#: IoU 0.7 (``db/detection.py``'s default, the configs set none) for the corners and the center alike, sigma = d / 6
#: for the corners and d / 5 for the center (``draw_gaussian(..., delte=5)``), the center at the integer cell of the
#: scaled box center.
TRIPLET_ASSIGNER = dict(
    type='GaussianHeatmapAssigner',
    radius_formula='original',
    min_overlap=0.7,
    sigma_factor=dict(top_left=6.0, bottom_right=6.0, center=5.0),
    clip_to='input')
#: ``_decode`` of Duankaiwen/CenterNet@3ad3a10 ``models/py_utils/kp_utils.py`` (K = 70, kernel 3, ae 0.5, 1000).
TRIPLET_DECODER = dict(type='TripletDecoder', topk=70, center_topk=70, local_maximum_kernel=3, ae_threshold=0.5,
                       num_dets=1000)
TRIPLET_KEYPOINTS = ('top_left', 'bottom_right', 'center')


@MODELS.register_module()
class TripletHead(CornerPoolHead):
    """CenterNet: Keypoint Triplets head (Duan et al., ICCV 2019), Duankaiwen/CenterNet@3ad3a10
    ``models/CenterNet-104.py``, ``models/py_utils/kp.py``.

    :class:`CornerPoolHead` with keypoints top-left, bottom-right and center; cascade corner pooling
    (:class:`mmkp.models.layers.CascadeCornerPoolModule`) for the corners and center pooling
    (:class:`mmkp.models.layers.CenterPoolModule`) for the center; heatmaps (bias -2.19) and offsets for all three,
    embeddings for the corners only; every stack supervised (focal loss on the three heatmaps, pull / push on the
    corner embeddings, SmoothL1 on the three offsets, all / #stacks, ``kp.py::AELoss``). Targets default to
    :data:`TRIPLET_ASSIGNER`, decoding to :data:`TRIPLET_DECODER` (``test_cfg.decoder``).

    Testing: ``predict(..., with_nms=True)`` decodes with the decoder's center-region check, then soft-NMS.
    ``with_nms=False`` (what :class:`mmkp.models.test_time_augs.CornerNetTTAModel` asks for) returns the unchecked
    pairs with the view's centers in the results' ``metainfo``; :meth:`unflip_detections` mirrors boxes and centers,
    and :meth:`merge_view_detections` pools the views and runs the check once against the centers of all views in
    view order (the original: the image's centers, then the flipped image's, ``test/coco.py``).

    Args:
        num_classes (int): number of classes.
        keypoints (Sequence[str]): defaults to top-left, bottom-right, center.
        corner_pool (dict): defaults to ``CascadeCornerPoolModule``.
        center_pool (dict): defaults to ``CenterPoolModule``.
        train_cfg (dict, optional): ``assigner`` (default :data:`TRIPLET_ASSIGNER`).
        test_cfg (dict, optional): ``decoder`` (default :data:`TRIPLET_DECODER`), ``nms``, ``max_per_img``.
        **kwargs: the other :class:`CornerPoolHead` arguments.

    Raises:
        ValueError: as :class:`CornerPoolHead`, and when ``'center'`` is not a keypoint type or the decoder is not
            a :class:`TripletDecoder`-like one (no ``center_check``).
    """

    def __init__(self,
                 num_classes: int,
                 keypoints=TRIPLET_KEYPOINTS,
                 corner_pool: ConfigType = dict(type='CascadeCornerPoolModule'),
                 center_pool: ConfigType = dict(type='CenterPoolModule'),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 **kwargs) -> None:
        if 'center' not in tuple(keypoints):
            raise ValueError(f"TripletHead needs the 'center' keypoint type, got {tuple(keypoints)}")
        train_cfg = copy.deepcopy(dict(train_cfg or {}))
        train_cfg.setdefault('assigner', TRIPLET_ASSIGNER)
        test_cfg = copy.deepcopy(dict(test_cfg or {}))
        test_cfg.setdefault('decoder', TRIPLET_DECODER)
        super().__init__(num_classes, keypoints=keypoints, corner_pool=corner_pool, center_pool=center_pool,
                         train_cfg=train_cfg, test_cfg=test_cfg, **kwargs)
        if not hasattr(self.decoder, 'center_check'):
            raise ValueError(f'test_cfg.decoder must be a TripletDecoder, got {type(self.decoder).__name__}')

    def predict_by_feat(self,
                        outputs: KeypointMaps,
                        batch_img_metas: Optional[List[dict]] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Checked boxes after NMS (``with_nms``), or unchecked pairs with the centers in ``metainfo``.

        The check runs when the decoder's ``center_check`` is True (the default; ``False`` evaluates the same
        model as a CornerNet, without the center-region check, e.g. for the false-discovery comparison of
        ``tools/analysis_tools/triplet_center_check.py``); without NMS it is left to
        :meth:`merge_view_detections`.
        """
        check = self.decoder.center_check
        self.decoder.center_check = check and with_nms
        try:
            results = self.decoder.decode_outputs(outputs.stack(-1), batch_img_metas, rescale=rescale)
        finally:
            self.decoder.center_check = check
        if not with_nms:
            return results
        return [self.nms_detections(r) for r in results]

    def unflip_detections(self, results: InstanceData, img_meta: dict) -> InstanceData:
        """Boxes (:meth:`CornerPoolHead.unflip_detections`) and the ``metainfo`` centers of a flipped view."""
        out = super().unflip_detections(results, img_meta)
        if img_meta.get('flip', False) and 'centers' in results.metainfo:
            centers = results.metainfo['centers']
            points = super().unflip_detections(InstanceData(bboxes=centers.repeat(1, 2)), img_meta).bboxes
            # a mirrored degenerate box (x, y, x, y) comes back as (x', y', x', y') up to the corner order
            out.set_metainfo(dict(centers=torch.stack([points[:, [0, 2]].min(1)[0], points[:, [1, 3]].min(1)[0]],
                                                      -1)))
        return out

    @staticmethod
    def center_views(img_metas: List[dict]) -> List[int]:
        """Indices of the views whose centers the check reads: Duankaiwen/CenterNet@3ad3a10 ``test/coco.py`` takes
        the centers of scale 1 only (the image and its flip) in a multi-scale test.

        A view's scale is its ``scale_factor`` (1 when absent). When every view has the same scale (a flip test, or
        a single-scale test after a fixed resize) all views are center views; otherwise the views of scale 1
        (within 1e-2).

        Raises:
            ValueError: a multi-scale test without scale 1.
        """
        scales = [float(meta.get('scale_factor', (1.0, 1.0))[0]) for meta in img_metas]
        if max(scales) - min(scales) < 1e-2:
            return list(range(len(img_metas)))
        views = [i for i, s in enumerate(scales) if abs(s - 1.0) < 1e-2]
        if not views:
            raise ValueError(f'the multi-scale test of keypoint triplets needs scale 1 (the centers come from scale 1 '
                             f'only), got view scales {sorted(set(round(s, 3) for s in scales))}: add '
                             f'Resize(scale_factor=1.0) to the TestTimeAug scales')
        return views

    def merge_view_detections(self, results: List[InstanceData], img_metas: List[dict]) -> InstanceData:
        """Pool the views' unchecked pairs, then the center-region check against the centers of the
        :meth:`center_views` (in view order: the original's image centers before the flipped image's); no check
        when the decoder's ``center_check`` is False.

        Returns:
            InstanceData: the surviving boxes with their new scores and ``ct_scores``.

        Raises:
            KeyError: when a view carries no ``centers`` metainfo (decoded with the check already applied).
            ValueError: see :meth:`center_views`.
        """
        for i, r in enumerate(results):
            if 'centers' not in r.metainfo:
                raise KeyError(f'view {i} has no centers in its metainfo: decode with with_nms=False')
        views = [results[i] for i in self.center_views(img_metas)]
        merged = super().merge_view_detections(results, img_metas)
        if not self.decoder.center_check:
            return merged
        centers = torch.cat([r.metainfo['centers'] for r in views])
        center_scores = torch.cat([r.metainfo['center_scores'] for r in views])
        center_labels = torch.cat([r.metainfo['center_labels'] for r in views])
        scores, ct_scores = center_region_check(merged.bboxes[None], merged.scores[None], merged.labels[None],
                                                centers[None], center_scores[None], center_labels[None],
                                                self.decoder.small_box_area)
        keep = scores[0] > -1
        out = InstanceData(**{k: v[keep] for k, v in merged.items()})
        out.scores = scores[0][keep]
        out.ct_scores = ct_scores[0][keep]
        return out
