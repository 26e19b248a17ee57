"""FCOS head: per-point classification, (l, t, r, b) regression and center-ness on P3-P7, original training and test."""
import copy
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import Scale
from mmdet.models.dense_heads.anchor_free_head import AnchorFreeHead
from mmdet.models.task_modules.prior_generators import MlvlPointGenerator
from mmdet.structures.bbox import distance2bbox
from mmdet.utils import ConfigType, InstanceList, MultiConfig, OptConfigType, OptInstanceList, reduce_mean
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmkp.registry import MODELS, TASK_UTILS
from ..utils.heatmap import check_no_nan

#: Targets of the original paper configs (tianzhi0549/FCOS@a773f12 ``configs/fcos/fcos_R_50_FPN_1x.yaml``) are the
#: assigner's defaults: ranges ((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)), no center sampling; the
#: "imprv" configs add it.
DEFAULT_ASSIGNER = dict(type='FCOSRangeAssigner')
#: Inference of tianzhi0549/FCOS@a773f12 ``fcos_core/modeling/rpn/fcos/inference.py`` with the defaults of
#: ``fcos_core/config/defaults.py`` (same repository and commit).
DEFAULT_TEST_CFG = dict(
    score_thr=0.05,  # INFERENCE_TH, on the class probability before center-ness
    nms_pre=1000,  # PRE_NMS_TOP_N, per level and image
    nms_pre_by='cls_centerness',  # candidates ranked by cls * center-ness
    score_mode='sqrt',  # output score sqrt(cls * center-ness)
    nms=dict(type='nms', iou_threshold=0.6),  # NMS_TH, class-aware (boxlist_ml_nms)
    max_per_img=100,  # TEST.DETECTIONS_PER_IMG
    min_bbox_size=-1)
NMS_PRE_BY = ('cls_centerness', 'cls')
SCORE_MODES = ('sqrt', 'product')


def _origin_boxes(distances: Tensor) -> Tensor:
    """(l, t, r, b) -> the box (-l, -t, r, b) around a point at the origin, for IoU-type losses.

    IoU, GIoU and L1 between two boxes around the same point do not depend on where the point is; at the origin
    they are computed without the rounding of large pixel coordinates (and the original's (l, t, r, b) IoU loss is
    reproduced bit for bit). mmdet decodes at the point instead, which gives the same values up to rounding.
    """
    return torch.cat([-distances[..., :2], distances[..., 2:]], dim=-1)


@MODELS.register_module()
class FCOSPointHead(AnchorFreeHead):
    """FCOS (Tian et al., 2019) with the "improvements" of the original repository as named options.

    Layout, initialisation and numerics follow tianzhi0549/FCOS@a773f12 ``fcos_core/modeling/rpn/fcos/fcos.py``:
    shared over levels, a classification tower and a box tower of ``stacked_convs`` x [conv3x3 (bias)
    -> GN(32) -> ReLU], then ``conv_cls`` (``num_classes``), ``conv_reg`` (4) and ``conv_centerness`` (1), all 3x3;
    every conv normal(std 0.01) with bias 0 except the classification bias -log(99) (prior 0.01); one learnable
    ``Scale`` (1.0) per level. Parameter names are mmdet's ``FCOSHead`` ones (an mmdet FCOS checkpoint loads as is;
    :func:`original_fcos_key_map` maps the original's). The towers and ``Scale`` come from mmdet's ``AnchorFreeHead``.

    Points: one source. ``self.prior_generator`` (mmdet ``MlvlPointGenerator(strides, offset=point_offset)``) lays
    out the points of every level, row-major, at ((i + point_offset) * stride, (j + point_offset) * stride) input
    pixels; :meth:`loss_by_feat` hands them to the assigner and :meth:`predict_by_feat` decodes boxes at them. The
    original's ``compute_locations`` (``fcos.py``) puts them at i * s + s // 2, i.e. ``point_offset=0.5`` for the
    even strides of P3-P7.

    Options (defaults are the original paper's; the "imprv" configs turn the first two and the assigner's
    ``center_sampling`` on and use the GIoU loss):

    - ``norm_on_bbox`` (``NORM_REG_TARGETS``): regression ``relu(scale * x)`` in stride units (targets divided by
      the stride), times the stride at test; off: ``exp(scale * x)`` in pixels;
    - ``centerness_on_reg`` (``CENTERNESS_ON_REG``): center-ness from the box tower instead of the class tower.

    Training (``fcos_core/modeling/rpn/fcos/loss.py``, same repository and commit): targets from
    ``train_cfg.assigner`` (default :data:`DEFAULT_ASSIGNER`, :class:`~mmkp.models.task_modules.FCOSRangeAssigner`),
    given the points of ``self.prior_generator``, for the whole batch at once;
    sigmoid focal loss / max(num_pos, 1); box loss on the positives weighted by their center-ness target and
    divided by the sum of those targets (default :class:`~mmkp.models.losses.FCOSIoULoss`, -log((I+1)/(U+1)));
    center-ness BCE / max(num_pos, 1). num_pos and the center-ness sum are averaged over GPUs as the original.

    Test (``fcos_core/modeling/rpn/fcos/inference.py``, same repository and commit), ``test_cfg`` keys, defaults
    :data:`DEFAULT_TEST_CFG`:

    - ``score_thr`` (0.05): candidates have class probability > score_thr, before center-ness;
    - ``nms_pre`` (1000): per level and image, the top candidates ranked by ``nms_pre_by``: ``'cls_centerness'``
      (original) or ``'cls'`` (mmdet);
    - ``score_mode``: ``'sqrt'`` (original, sqrt(cls * center-ness)) or ``'product'`` (mmdet, cls * center-ness);
    - ``nms`` (class-aware NMS, IoU 0.6), ``max_per_img`` (100), ``min_bbox_size`` (-1: off; as mmdet).

    The candidate selection and the box decoding (point -+ (l, t, r, b), clipped to ``img_shape``) are the head's,
    batched over the images; everything after them is mmdet's inherited ``BaseDenseHead._bbox_post_process``, per
    image: rescale to the original image, ``min_bbox_size``, class-aware NMS, ``max_per_img`` (the original runs
    NMS before rescaling, which gives the same result up to rounding for a uniform scale factor).

    Args:
        num_classes (int): number of classes (background excluded).
        in_channels (int): channels of each input level.
        strides (Sequence[int]): stride of each level in input pixels. Defaults to (8, 16, 32, 64, 128).
        point_offset (float): position of a level's points inside their cells, in strides (see Points above); the
            ``offset`` of ``self.prior_generator``. Defaults to 0.5 (the original's and mmdet's).
        norm_on_bbox (bool): see above. Defaults to False.
        centerness_on_reg (bool): see above. Defaults to False.
        regress_ranges, center_sampling, center_sample_radius (optional): mmdet ``FCOSHead`` arguments, accepted
            so that an mmdet FCOS config only needs its ``type`` changed; they fill the assigner config (a
            conflicting value there raises ValueError). Defaults to None (the assigner config decides).
        conv_bias (bool | str): bias of the tower convs. The original has one (its checkpoints carry
            ``cls_tower.0.bias``); mmdet's ``'auto'`` drops it before GN. Defaults to True.
        loss_cls (dict): classification loss on logits. Defaults to sigmoid ``FocalLoss`` (gamma 2, alpha 0.25).
        loss_bbox (dict): loss on boxes (x1, y1, x2, y2) around the point. Defaults to ``FCOSIoULoss`` (iou, +1).
        loss_centerness (dict): loss on center-ness logits. Defaults to sigmoid ``CrossEntropyLoss``.
        norm_cfg (dict): tower normalisation. Defaults to GN with 32 groups.
        train_cfg (dict, optional): ``assigner``.
        test_cfg (dict, optional): see above; missing keys take :data:`DEFAULT_TEST_CFG`.
        init_cfg (dict | list[dict]): defaults to normal(0.01) convs and the prior-0.01 class bias.
        **kwargs: other ``AnchorFreeHead`` arguments (``feat_channels`` 256, ``stacked_convs`` 4,
            ``dcn_on_last_conv``, ``conv_cfg``).

    Raises:
        ValueError: when ``norm_on_bbox`` or the mmdet-style arguments disagree with the assigner config, or an old
            ``train_cfg.assigner.offset`` differs from ``point_offset``, or the number of strides and of regress
            ranges differ, or on an unknown ``test_cfg`` option value.

    Example:
        >>> head = FCOSPointHead(num_classes=3, in_channels=32, feat_channels=32, strides=(8, 16),
        ...                      regress_ranges=((-1, 64), (64, 1e8)))
        >>> feats = [torch.rand(1, 32, 16, 16), torch.rand(1, 32, 8, 8)]
        >>> cls_scores, bbox_preds, centernesses = head(feats)
        >>> cls_scores[0].shape, bbox_preds[1].shape, centernesses[0].shape
        (torch.Size([1, 3, 16, 16]), torch.Size([1, 4, 8, 8]), torch.Size([1, 1, 16, 16]))
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 strides: Sequence[int] = (8, 16, 32, 64, 128),
                 point_offset: float = 0.5,
                 norm_on_bbox: bool = False,
                 centerness_on_reg: bool = False,
                 regress_ranges: Optional[Sequence[Tuple[float, float]]] = None,
                 center_sampling: Optional[bool] = None,
                 center_sample_radius: Optional[float] = None,
                 conv_bias: bool = True,
                 loss_cls: ConfigType = dict(
                     type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='FCOSIoULoss', loss_type='iou', smooth=1.0, loss_weight=1.0),
                 loss_centerness: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32, requires_grad=True),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(type='Normal', name='conv_cls', std=0.01, bias_prob=0.01)),
                 **kwargs) -> None:
        self.norm_on_bbox = bool(norm_on_bbox)
        self.centerness_on_reg = bool(centerness_on_reg)
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            strides=strides,
            conv_bias=conv_bias,
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            norm_cfg=norm_cfg,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
            **kwargs)
        for s in self.strides:
            if not isinstance(s, int):
                raise ValueError(f'strides must be integers (square strides), got {self.strides}')
        self.loss_centerness = MODELS.build(loss_centerness)
        # the one source of points, for the assigner (loss_by_feat) and the decoding (predict_by_feat)
        self.point_offset = float(point_offset)
        self.prior_generator = MlvlPointGenerator(self.strides, offset=self.point_offset)
        assigner_cfg = copy.deepcopy(dict((train_cfg or {}).get('assigner', None) or DEFAULT_ASSIGNER))
        if 'offset' in assigner_cfg:  # the assigner's own points (and offset) are gone; see FCOSRangeAssigner
            offset = assigner_cfg.pop('offset')
            if not isinstance(offset, (int, float)) or float(offset) != self.point_offset:
                raise ValueError(f'{type(self).__name__}: train_cfg.assigner.offset={offset!r} differs from '
                                 f'point_offset={self.point_offset!r}; the points come from the head\'s '
                                 'prior_generator: set bbox_head.point_offset and drop train_cfg.assigner.offset')
            warnings.warn('train_cfg.assigner.offset is deprecated (the assigner takes the head\'s points): set '
                          'bbox_head.point_offset instead', DeprecationWarning)
        for key, value in (('norm_on_bbox', self.norm_on_bbox), ('regress_ranges', regress_ranges),
                           ('center_sampling', center_sampling), ('center_sample_radius', center_sample_radius)):
            if value is None:
                continue
            if key in assigner_cfg and _normalise(assigner_cfg[key]) != _normalise(value):
                raise ValueError(f'{type(self).__name__}: {key}={value!r} differs from train_cfg.assigner.{key}='
                                 f'{assigner_cfg[key]!r}; set it in one place')
            assigner_cfg[key] = value
        self.assigner = TASK_UTILS.build(assigner_cfg)
        if len(self.assigner.regress_ranges) != len(self.strides):
            raise ValueError(f'{len(self.strides)} strides but {len(self.assigner.regress_ranges)} regress_ranges '
                             'in the assigner: give one range per level')
        self.test_cfg = self._merge_test_cfg(test_cfg)

    @staticmethod
    def _merge_test_cfg(test_cfg: OptConfigType) -> ConfigDict:
        """``test_cfg`` over :data:`DEFAULT_TEST_CFG`, checked (``min_bbox_size=None`` means off, i.e. -1)."""
        cfg = ConfigDict(copy.deepcopy(DEFAULT_TEST_CFG))
        cfg.update(copy.deepcopy(dict(test_cfg or {})))
        if cfg.min_bbox_size is None:  # BaseDenseHead._bbox_post_process compares it with 0
            cfg.min_bbox_size = -1
        if cfg.nms_pre_by not in NMS_PRE_BY:
            raise ValueError(f'test_cfg.nms_pre_by must be one of {NMS_PRE_BY}, got {cfg.nms_pre_by!r}')
        if cfg.score_mode not in SCORE_MODES:
            raise ValueError(f'test_cfg.score_mode must be one of {SCORE_MODES}, got {cfg.score_mode!r}')
        return cfg

    def _init_layers(self) -> None:
        """Towers and predictors of ``AnchorFreeHead``, plus ``conv_centerness`` and one ``Scale`` per level."""
        super()._init_layers()
        self.conv_centerness = nn.Conv2d(self.feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Raw maps of every level.

        Args:
            x (tuple[Tensor]): one feature (B, in_channels, H_l, W_l) per level (FPN P3-P7).

        Returns:
            tuple[list[Tensor], list[Tensor], list[Tensor]]: per level, class logits (B, num_classes, H_l, W_l);
            distances (B, 4, H_l, W_l) as (l, t, r, b), >= 0, in input pixels (in strides while training with
            ``norm_on_bbox``); center-ness logits (B, 1, H_l, W_l).

        Raises:
            ValueError: when the number of levels differs from the number of strides.
        """
        if len(x) != len(self.strides):
            raise ValueError(f'{type(self).__name__} has {len(self.strides)} strides but got {len(x)} feature '
                             'levels; set bbox_head.strides to match the neck outputs')
        cls_scores, bbox_preds, centernesses = [], [], []
        for feat, scale, stride in zip(x, self.scales, self.strides):
            cls_score, bbox_pred, centerness = self.forward_single(feat, scale, stride)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
            centernesses.append(centerness)
        return cls_scores, bbox_preds, centernesses

    def forward_single(self, x: Tensor, scale: Scale, stride: int) -> Tuple[Tensor, Tensor, Tensor]:
        """One level: towers, predictors, scale, then exp (original) or relu [x stride at test] (``norm_on_bbox``).

        Args:
            x (Tensor): (B, in_channels, H, W).
            scale (Scale): the level's learnable scale.
            stride (int): the level's stride in input pixels.

        Returns:
            tuple[Tensor, Tensor, Tensor]: class logits (B, num_classes, H, W), distances (B, 4, H, W) and
            center-ness logits (B, 1, H, W).
        """
        cls_score, bbox_pred, cls_feat, reg_feat = super().forward_single(x)
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        bbox_pred = scale(bbox_pred).float()  # float: exp overflows in half precision
        if self.norm_on_bbox:
            # clamp(min=0) is F.relu without its in-place autograd pitfall (mmdet FCOSHead)
            bbox_pred = bbox_pred.clamp(min=0)
            if not self.training:
                bbox_pred = bbox_pred * stride
        else:
            bbox_pred = bbox_pred.exp()
        return cls_score, bbox_pred, centerness

    @staticmethod
    def _flatten(maps: List[Tensor], channels: int) -> Tensor:
        """Per-level (B, C, H, W) maps -> (B, sum H*W, C), level after level, row-major inside a level."""
        num_imgs = maps[0].size(0)
        return torch.cat([m.permute(0, 2, 3, 1).reshape(num_imgs, -1, channels) for m in maps], dim=1)

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     centernesses: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Focal, center-ness-weighted IoU and center-ness losses of the batch (``loss.py``, ``__call__``).

        The points are those of ``self.prior_generator`` (the ones :meth:`predict_by_feat` decodes at), made here
        once for the batch and passed to ``self.assigner.assign``.

        Args:
            cls_scores, bbox_preds, centernesses (list[Tensor]): outputs of :meth:`forward`, per level.
            batch_gt_instances (list[InstanceData]): per image ``bboxes`` (n, 4) in input pixels, ``labels`` (n,).
            batch_img_metas (list[dict]): metas (unused: targets depend only on the boxes and the map sizes).
            batch_gt_instances_ignore: unused (the original has no ignore regions).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_centerness``.

        Raises:
            ValueError: when the three outputs have different numbers of levels.
        """
        if not len(cls_scores) == len(bbox_preds) == len(centernesses):
            raise ValueError('cls_scores, bbox_preds and centernesses must have one map per level, got '
                             f'{len(cls_scores)}, {len(bbox_preds)}, {len(centernesses)}')
        featmap_sizes = [tuple(m.shape[-2:]) for m in cls_scores]
        mlvl_points = self.prior_generator.grid_priors(featmap_sizes, dtype=bbox_preds[0].dtype,
                                                       device=bbox_preds[0].device)
        targets = self.assigner.assign(batch_gt_instances, mlvl_points, featmap_sizes, self.strides, self.num_classes)
        flat_cls = self._flatten(cls_scores, self.cls_out_channels)
        flat_reg = self._flatten(bbox_preds, 4)
        flat_ctr = self._flatten(centernesses, 1)[..., 0]
        labels = targets.labels
        pos = labels < self.num_classes  # (B, N)

        num_pos = flat_cls.new_tensor(float(pos.sum()))
        num_pos = max(reduce_mean(num_pos), 1.0)
        loss_cls = self.loss_cls(flat_cls.reshape(-1, self.cls_out_channels), labels.reshape(-1),
                                 avg_factor=num_pos)

        pos_reg = flat_reg[pos]
        pos_ctr = flat_ctr[pos]
        pos_reg_targets = targets.bbox_targets[pos]
        pos_ctr_targets = targets.centerness_targets[pos]
        ctr_denorm = max(reduce_mean(pos_ctr_targets.sum().detach()), 1e-6)
        if pos_reg.shape[0] > 0:
            loss_bbox = self.loss_bbox(
                _origin_boxes(pos_reg), _origin_boxes(pos_reg_targets), weight=pos_ctr_targets,
                avg_factor=ctr_denorm)
            loss_centerness = self.loss_centerness(pos_ctr, pos_ctr_targets, avg_factor=num_pos)
        else:  # keep the graph alive (the original returns the same sums)
            loss_bbox = pos_reg.sum()
            loss_centerness = pos_ctr.sum()
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_centerness=loss_centerness)

    def get_targets(self, points: List[Tensor], batch_gt_instances: InstanceList):
        """Not used: targets come from ``self.assigner`` (see :meth:`loss_by_feat`)."""
        raise NotImplementedError(f'{type(self).__name__} takes its targets from self.assigner.assign(...)')

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        centernesses: List[Tensor],
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Boxes, scores and labels per image (``inference.py``): candidates batched, then mmdet's post-process.

        Kept in the head, because mmdet's ``BaseDenseHead`` does it differently (its ``_predict_by_feat_single``
        thresholds and ranks by the class probability alone, one image at a time):

        - candidates: class probability > ``score_thr`` before center-ness, the top ``nms_pre`` per level and image
          ranked by ``nms_pre_by``, for the whole batch at once;
        - decoding at the points of ``self.prior_generator`` (the ones the assigner is given), clipped to
          ``img_shape``;
        - ``score_mode='sqrt'``: the original's score sqrt(cls * center-ness) is computed here, because the inherited
          post-process can only multiply ``scores`` by ``score_factors`` (its own TODO notes the missing sqrt), and
          sqrt(cls) * sqrt(center-ness) differs from it in the last bit.

        Everything else is the inherited ``_bbox_post_process``, per image: rescale by ``scale_factor``, the
        product cls * center-ness of ``score_mode='product'`` (passed as ``score_factors``), ``min_bbox_size``,
        class-aware ``batched_nms`` with ``cfg.nms``, ``max_per_img``.

        Args:
            cls_scores, bbox_preds, centernesses (list[Tensor]): outputs of :meth:`forward` in eval mode, per level
                (B, num_classes, H_l, W_l) logits, (B, 4, H_l, W_l) distances in input pixels, (B, 1, H_l, W_l)
                logits.
            batch_img_metas (list[dict]): per image ``img_shape`` (h, w) (boxes are clipped to it) and, with
                ``rescale``, ``scale_factor`` (w, h).
            cfg (dict, optional): replaces ``self.test_cfg`` (merged over the defaults). Defaults to None.
            rescale (bool): map boxes to original-image pixels (divide by ``scale_factor``). Defaults to False
                (boxes in input pixels), mmdet's convention.
            with_nms (bool): run NMS and keep ``max_per_img``; off, every candidate is returned. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes`` (K, 4) (x1, y1, x2, y2) in input pixels, or original-image
            pixels with ``rescale``; ``scores`` (K,), sorted descending with NMS; ``labels`` (K,).

        Raises:
            ValueError: when ``batch_img_metas`` is missing or does not match the batch, a meta lacks
                ``img_shape``, or lacks ``scale_factor`` with ``rescale=True``.
            FloatingPointError: an output holds NaN (:func:`mmkp.models.utils.heatmap.check_no_nan`).
        """
        for name, maps in (('class logits', cls_scores), ('box distances', bbox_preds),
                           ('center-ness logits', centernesses)):
            for level, m in enumerate(maps):
                check_no_nan(m, f'{name} of level {level}')
        cfg = self.test_cfg if cfg is None else self._merge_test_cfg(cfg)
        num_imgs = cls_scores[0].size(0)
        if batch_img_metas is None or len(batch_img_metas) != num_imgs:
            raise ValueError(f'batch_img_metas must hold one meta dict per image ({num_imgs})')
        for i, meta in enumerate(batch_img_metas):
            if meta.get('img_shape') is None:
                raise ValueError(f'batch_img_metas[{i}] has no img_shape (boxes are clipped to it)')
            if rescale and meta.get('scale_factor') is None:
                raise ValueError(f'rescale=True needs scale_factor in batch_img_metas[{i}]')
        num_classes = self.cls_out_channels
        featmap_sizes = [m.shape[-2:] for m in cls_scores]
        dtype, device = bbox_preds[0].dtype, bbox_preds[0].device
        mlvl_points = self.prior_generator.grid_priors(featmap_sizes, dtype=dtype, device=device)
        nms_pre = cfg.get('nms_pre', -1)
        score_thr = cfg.get('score_thr', 0.0)

        keep_valid, keep_cls, keep_ctr, keep_labels, keep_points, keep_dist = [], [], [], [], [], []
        for cls_score, bbox_pred, centerness, points in zip(cls_scores, bbox_preds, centernesses, mlvl_points):
            scores = cls_score.detach().permute(0, 2, 3, 1).reshape(num_imgs, -1).sigmoid()  # (B, HW * C)
            ctr = centerness.detach().permute(0, 2, 3, 1).reshape(num_imgs, -1).sigmoid()  # (B, HW)
            dist = bbox_pred.detach().permute(0, 2, 3, 1).reshape(num_imgs, -1, 4)
            candidate = scores > score_thr
            if cfg.nms_pre_by == 'cls_centerness':
                rank = (scores.view(num_imgs, -1, num_classes) * ctr[..., None]).view(num_imgs, -1)
            else:
                rank = scores
            k = scores.shape[1] if nms_pre is None or nms_pre <= 0 else min(int(nms_pre), scores.shape[1])
            top_rank, top_idx = rank.masked_fill(~candidate, -1.0).topk(k, dim=1)  # (B, k), sorted
            loc = torch.div(top_idx, num_classes, rounding_mode='floor')
            keep_valid.append(candidate.gather(1, top_idx))
            keep_cls.append(scores.gather(1, top_idx))
            keep_ctr.append(ctr.gather(1, loc))
            keep_labels.append(top_idx - loc * num_classes)
            keep_points.append(points[loc])
            keep_dist.append(dist.gather(1, loc[..., None].expand(-1, -1, 4)))
        valid = torch.cat(keep_valid, dim=1)  # (B, K)
        cls_prob, ctr_prob = torch.cat(keep_cls, dim=1), torch.cat(keep_ctr, dim=1)
        labels = torch.cat(keep_labels, dim=1)
        bboxes = distance2bbox(torch.cat(keep_points, dim=1), torch.cat(keep_dist, dim=1))  # (B, K, 4)
        return self.candidates_to_results(bboxes, valid, cls_prob, ctr_prob, labels, batch_img_metas, cfg, rescale,
                                          with_nms)

    def candidates_to_results(self, bboxes: Tensor, valid: Tensor, cls_prob: Tensor, ctr_prob: Tensor, labels: Tensor,
                              batch_img_metas: List[dict], cfg: ConfigDict, rescale: bool,
                              with_nms: bool = True) -> InstanceList:
        """The end of :meth:`predict_by_feat` (also run by the ONNX post-processor on the exported candidates):
        boxes clipped to ``img_shape``, the score of ``cfg.score_mode``, then mmdet's per-image post-process
        (score threshold, NMS, ``max_per_img``, rescale).

        Args:
            bboxes (Tensor): (B, K, 4) candidate boxes, x1 y1 x2 y2 in input pixels.
            valid (Tensor): (B, K) bool, the candidates above the score threshold.
            cls_prob (Tensor): (B, K) classification probabilities.
            ctr_prob (Tensor): (B, K) center-ness probabilities.
            labels (Tensor): (B, K) class indices.
            batch_img_metas (list[dict]): per image ``img_shape`` (and ``scale_factor`` for ``rescale``).
            cfg (ConfigDict): the test config (``score_mode``, ``nms``, ``max_per_img``...).
            rescale (bool): map the boxes back to original-image pixels.
            with_nms (bool): run NMS. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes``, ``scores``, ``labels``.
        """
        img_hw = bboxes.new_tensor([meta['img_shape'][:2] for meta in batch_img_metas])  # (B, 2) as (h, w)
        max_xy = img_hw.flip(-1).repeat(1, 2)[:, None, :]  # (B, 1, 4) as (w, h, w, h)
        bboxes = torch.minimum(bboxes.clamp(min=0), max_xy)
        valid = valid.bool()
        # 'sqrt': the original's score, made here; 'product': mmdet's, made by _bbox_post_process from score_factors
        sqrt_scores = (cls_prob * ctr_prob).sqrt() if cfg.score_mode == 'sqrt' else None

        results_list = []
        for img_id, meta in enumerate(batch_img_metas):  # per image: mmdet's post-process takes one image
            sel = valid[img_id]
            results = InstanceData(bboxes=bboxes[img_id][sel], labels=labels[img_id][sel])
            if sqrt_scores is not None:
                results.scores = sqrt_scores[img_id][sel]
            else:
                results.scores = cls_prob[img_id][sel]
                results.score_factors = ctr_prob[img_id][sel]
            results_list.append(
                self._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms, img_meta=meta))
        return results_list


def _normalise(value):
    """Config values compared as nested tuples of floats (lists and tuples alike)."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def original_fcos_key_map(num_convs: int = 4, num_levels: int = 5, depth: int = 50) -> Dict[str, str]:
    """Map of the original FCOS checkpoint keys to an mmdet/mmkp FCOS detector's state-dict keys.

    The original (``FCOS_R_50_FPN_1x.pth`` / ``FCOS_imprv_R_50_FPN_1x.pth``, the released files linked from
    tianzhi0549/FCOS@a773f12 ``README.md``) stores
    ``model`` with keys ``module.backbone.body.*`` (maskrcnn-benchmark ResNet with FrozenBatchNorm2d),
    ``module.backbone.fpn.*`` (FPN with ``top_blocks.p6/p7``) and ``module.rpn.head.*`` (this head). Strip the
    ``module.`` prefix first. The map covers every key: the ResNet stem and stages (``conv`` weights and the four
    frozen-BN tensors), the FPN lateral / output / P6 / P7 convs, the two towers (``cls_tower.{3i}`` conv,
    ``{3i + 1}`` GN), the three predictors and the scales. Two tensors need more than a rename: the original
    ``Scale`` is a (1,) tensor and mmcv's a 0-dim one (``.reshape(())``), and mmdet BNs also hold
    ``num_batches_tracked``, which the original lacks (filled with 0). This map is the single statement of the
    names: :mod:`mmkp.converters.fcos` (``tools/model_converters/fcos_to_mmkp.py``) turns it into its key rules and
    does both, loading ``strict=True``.

    Args:
        num_convs (int): convs per tower. Defaults to 4.
        num_levels (int): FPN levels (scales). Defaults to 5.
        depth (int): ResNet depth, 50 or 101. Defaults to 50.

    Returns:
        dict[str, str]: original key (without ``module.``) -> mmdet key.

    Raises:
        ValueError: on an unsupported depth.
    """
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
    if depth not in blocks:
        raise ValueError(f'depth must be 50 or 101, got {depth}')
    key_map = {}
    bn = ('weight', 'bias', 'running_mean', 'running_var')
    key_map['backbone.body.stem.conv1.weight'] = 'backbone.conv1.weight'
    for t in bn:
        key_map[f'backbone.body.stem.bn1.{t}'] = f'backbone.bn1.{t}'
    for stage, num_blocks in enumerate(blocks[depth], start=1):
        for b in range(num_blocks):
            src, dst = f'backbone.body.layer{stage}.{b}', f'backbone.layer{stage}.{b}'
            for i in (1, 2, 3):
                key_map[f'{src}.conv{i}.weight'] = f'{dst}.conv{i}.weight'
                for t in bn:
                    key_map[f'{src}.bn{i}.{t}'] = f'{dst}.bn{i}.{t}'
            if b == 0:
                key_map[f'{src}.downsample.0.weight'] = f'{dst}.downsample.0.weight'
                for t in bn:
                    key_map[f'{src}.downsample.1.{t}'] = f'{dst}.downsample.1.{t}'
    for i, level in enumerate((2, 3, 4)):  # C3-C5 -> P3-P5
        for t in ('weight', 'bias'):
            key_map[f'backbone.fpn.fpn_inner{level}.{t}'] = f'neck.lateral_convs.{i}.conv.{t}'
            key_map[f'backbone.fpn.fpn_layer{level}.{t}'] = f'neck.fpn_convs.{i}.conv.{t}'
    for i, name in ((3, 'p6'), (4, 'p7')):
        for t in ('weight', 'bias'):
            key_map[f'backbone.fpn.top_blocks.{name}.{t}'] = f'neck.fpn_convs.{i}.conv.{t}'
    for tower, ours in (('cls_tower', 'cls_convs'), ('bbox_tower', 'reg_convs')):
        for i in range(num_convs):
            for t in ('weight', 'bias'):
                key_map[f'rpn.head.{tower}.{3 * i}.{t}'] = f'bbox_head.{ours}.{i}.conv.{t}'
                key_map[f'rpn.head.{tower}.{3 * i + 1}.{t}'] = f'bbox_head.{ours}.{i}.gn.{t}'
    for src, dst in (('cls_logits', 'conv_cls'), ('bbox_pred', 'conv_reg'), ('centerness', 'conv_centerness')):
        for t in ('weight', 'bias'):
            key_map[f'rpn.head.{src}.{t}'] = f'bbox_head.{dst}.{t}'
    for i in range(num_levels):
        key_map[f'rpn.head.scales.{i}.scale'] = f'bbox_head.scales.{i}.scale'
    return key_map
