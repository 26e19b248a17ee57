"""CornerNet / CornerNet-Squeeze head: corner pooling, corner heatmaps, 1-d embeddings and offsets per stack."""
import copy
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, InstanceList, OptConfigType, OptInstanceList, OptMultiConfig
from mmengine.config import ConfigDict
from torch import Tensor, nn

from mmkp.registry import MODELS, TASK_UTILS
from ..utils.heatmap import gather_feat
from ..utils.soft_nms_merge import corner_nms

#: Targets of CornerNet-Lite (``core/sample/cornernet.py``, ``configs/CornerNet.json``): corrected radius formula with
#: IoU 0.3, sigma = d / 6, boxes clipped to [0, W - 1] x [0, H - 1] of the input, ratio output / input (128 / 511).
DEFAULT_ASSIGNER = dict(
    type='GaussianHeatmapAssigner',
    keypoints=('top_left', 'bottom_right'),
    radius_formula='corrected',
    min_overlap=0.3,
    sigma_factor=6.0,
    clip_to='input')
DEFAULT_DECODER = dict(type='CornerPairDecoder', topk=100, local_maximum_kernel=3, ae_threshold=0.5, num_dets=1000)
#: Gaussian soft-NMS of the original (``core/external/nms.pyx``: sigma 0.5, discard below 0.001, "+1" box areas).
DEFAULT_NMS = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1)
#: mmdet ``CornerHead`` ``test_cfg`` keys and the decoder arguments they set.
MMDET_TEST_KEYS = dict(corner_topk='topk', local_maximum_kernel='local_maximum_kernel', distance_threshold='ae_threshold')

CORNER_REDUCTIONS = ('sum', 'mean')
STACK_REDUCTIONS = ('mean', 'sum')
OFFSET_NORMS = ('objects', 'clamped')


class _PredConv(nn.Module):
    """conv(k x k, bias) -> ReLU: the original's ``convolution(k, dim, dim, with_bn=False)`` (keys ``conv.*``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))


def _pred_module(in_channels: int, feat_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """``_pred_mod`` of CornerNet-Lite: conv(k x k, bias) -> ReLU -> conv1x1(bias); keys ``0.conv.*``, ``1.*``."""
    return nn.Sequential(
        _PredConv(in_channels, feat_channels, kernel_size), nn.Conv2d(feat_channels, out_channels, 1))


@MODELS.register_module()
class CornerPoolHead(BaseDenseHead):
    """CornerNet head (Law & Deng, ECCV 2018) and CornerNet-Squeeze head (Law et al., 2019).

    Per hourglass stack (CornerNet-Lite ``core/models/CornerNet.py``, ``CornerNet_Squeeze.py``, ``py_utils/
    modules.py::hg_net``; DETECTORS.md 2.4, 2.5, 3.2, 5.3): a top-left and a bottom-right corner pooling module
    (:class:`mmkp.models.layers.CornerPoolModule`, top + left / bottom + right pools), and on each of them three
    prediction modules -- heatmap (``num_classes`` channels, last bias -2.19), embedding (1 channel) and offset
    (2 channels) -- each conv(``pred_kernel_size``, bias) -> ReLU -> conv1x1 (3x3 for CornerNet, 1x1 for Squeeze).
    Every stack is supervised; only the last one is evaluated at test time (the original's ``_test``).

    Weight conversion from the original checkpoints (``reference/original_checkpoints/cornernetlite_cornernet.json``,
    ``..._squeeze.json``): after removing the ``module.`` prefix, the head's keys are the original's under
    ``bbox_head.``, one to one with the same shapes:

    ==============================================  =====================================================
    original (CornerNet-Lite)                       mmkp (this head)
    ==============================================  =====================================================
    ``tl_modules.{s}.p1_conv1.{conv,bn}.*``         ``bbox_head.tl_modules.{s}.p1_conv1.{conv,bn}.*``
    ``tl_modules.{s}.p2_conv1.{conv,bn}.*``         ``bbox_head.tl_modules.{s}.p2_conv1.{conv,bn}.*``
    ``tl_modules.{s}.p_conv1.*`` / ``p_bn1.*``      ``bbox_head.tl_modules.{s}.p_conv1.conv.*`` / ``.bn.*``
    ``tl_modules.{s}.conv1.*`` / ``bn1.*``          ``bbox_head.tl_modules.{s}.conv1.conv.*`` / ``.bn.*``
    ``tl_modules.{s}.conv2.{conv,bn}.*``            ``bbox_head.tl_modules.{s}.conv2.{conv,bn}.*``
    ``{tl,br}_{heats,tags,offs}.{s}.0.conv.*``      ``bbox_head.{tl,br}_{heats,tags,offs}.{s}.0.conv.*``
    ``{tl,br}_{heats,tags,offs}.{s}.1.*``           ``bbox_head.{tl,br}_{heats,tags,offs}.{s}.1.*``
    ==============================================  =====================================================

    ``br_modules`` as ``tl_modules`` (the renames are ``CornerPoolModule.ORIGINAL_PREFIX_MAP``). The CornerNet
    backbone maps onto mmdet's ``HourglassNet``: ``hg.pre.0`` -> ``backbone.stem.0``, ``hg.pre.1.{conv1,bn1,conv2,
    bn2}`` -> ``backbone.stem.1.0.*``, ``skip.{0,1}`` -> ``downsample.{0,1}`` (everywhere), ``hg.hgs.{s}`` ->
    ``backbone.hourglass_modules.{s}`` (``up1``/``low1``/``low2``/``low3`` unchanged), ``hg.cnvs.{s}`` ->
    ``backbone.out_convs.{s}``, ``hg.inters_.{s}.{0,1}`` -> ``backbone.conv1x1s.{s}.{conv,bn}``, ``hg.cnvs_.{s}.{0,1}``
    -> ``backbone.remap_convs.{s}.{conv,bn}``, ``hg.inters.{s}`` -> ``backbone.inters.{s}``
    (``tools/model_converters/cornernet_to_mmkp.py``; the Squeeze backbone: ``cornernet_squeeze_to_mmkp.py``).
    :meth:`convert_original_state_dict` renames the head keys; the original CornerNet repository's names
    (``{tl,br}_cnvs``, ``{tl,br}_regrs``) are accepted too. ``tests/test_models/test_dense_heads/
    test_corner_pool_head.py`` checks that all 1128 (CornerNet) and 990 (Squeeze) keys map one to one with equal
    shapes.

    Training (``train_cfg.assigner``, default :data:`DEFAULT_ASSIGNER`, CornerNet-Lite's targets): losses of
    ``core/models/py_utils/losses.py::CornerNet_Loss`` (DETECTORS.md 2.8) on every stack:

    * heatmaps: ``loss_heatmap`` (:class:`HeatmapFocalLoss` on logits with the original's clamp), each corner type
      normalised by its own number of positives;
    * embeddings gathered at the objects' corners: ``loss_embedding`` (:class:`AssociativeEmbeddingPullPushLoss`,
      pull and push weight 0.1, summed over images);
    * offsets gathered at the objects' corners: ``loss_offset`` (mmdet ``SmoothL1Loss``, beta 1) summed over objects
      and divided by #objects + 1e-4 (``offset_norm='objects'``).

    Original quirks kept by default, each behind a named option (mmdet ``CornerHead``'s choice in brackets):
    ``corner_reduction='sum'``: the top-left and bottom-right heatmap (and offset) losses are added ['mean'];
    ``stack_reduction='mean'``: every loss is divided by the number of stacks ['sum', as mmengine sums mmdet's
    per-level lists]; ``offset_norm='objects'``: #objects + 1e-4 ['clamped': max(#objects, 1)].

    Testing (``test_cfg``): ``decoder`` (default :data:`DEFAULT_DECODER`; mmdet's ``corner_topk`` /
    ``local_maximum_kernel`` / ``distance_threshold`` keys are honoured), ``nms`` (default :data:`DEFAULT_NMS`,
    Gaussian soft-NMS sigma 0.5 / 0.001 with the original's "+1" areas; ``dict(type='soft_nms_merge', ...,
    weight_exp=10)`` for the multi-scale merge; None for none) and ``max_per_img`` (100). See
    :func:`mmkp.models.utils.soft_nms_merge.corner_nms` for what differs from the original's post-processing.

    Args:
        num_classes (int): number of classes (heatmap channels).
        in_channels (int): channels of each stack's feature (the original's 256). Defaults to 256.
        num_stacks (int): number of input features, each with its own modules. Defaults to 2.
        pool_channels (int): channels of the corner-pool branches. Defaults to 128.
        feat_channels (int): channels of the first conv of each prediction module. Defaults to 256.
        pred_kernel_size (int): kernel of that conv: 3 (CornerNet) or 1 (CornerNet-Squeeze). Defaults to 3.
        heatmap_bias (float): last bias of the heatmap modules. Defaults to -2.19.
        corner_pool (dict): config of the corner-pool module, built once per stack and corner with
            ``in_channels``, ``pool_channels`` and ``corner`` filled in. Defaults to ``dict(type='CornerPoolModule')``.
        loss_heatmap (dict): heatmap loss on logits. Defaults to ``HeatmapFocalLoss`` (alpha 2, beta 4, clamp 1e-4).
        loss_embedding (dict): pull / push loss. Defaults to ``AssociativeEmbeddingPullPushLoss`` (0.1, 0.1).
        loss_offset (dict): offset loss, called with ``avg_factor``. Defaults to ``SmoothL1Loss`` (beta 1, weight 1).
        corner_reduction (str): ``'sum'`` or ``'mean'`` of the two corner types. Defaults to ``'sum'``.
        stack_reduction (str): ``'mean'`` or ``'sum'`` over stacks. Defaults to ``'mean'``.
        offset_norm (str): ``'objects'`` (#objects + 1e-4) or ``'clamped'`` (max(#objects, 1)). Defaults to
            ``'objects'``.
        train_cfg (dict, optional): ``assigner``.
        test_cfg (dict, optional): ``decoder``, ``nms``, ``max_per_img``.
        init_cfg (dict, optional): mmengine init config. Defaults to None: PyTorch's default init for every
            convolution and BN weight 1 / bias 0, as the original (which sets none), and the heatmap bias.

    Raises:
        ValueError: on bad option values, or when the number of features differs from ``num_stacks``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int = 256,
                 num_stacks: int = 2,
                 pool_channels: int = 128,
                 feat_channels: int = 256,
                 pred_kernel_size: int = 3,
                 heatmap_bias: float = -2.19,
                 corner_pool: ConfigType = dict(type='CornerPoolModule'),
                 loss_heatmap: ConfigType = dict(
                     type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
                 loss_embedding: ConfigType = dict(
                     type='AssociativeEmbeddingPullPushLoss', pull_weight=0.1, push_weight=0.1),
                 loss_offset: ConfigType = dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
                 corner_reduction: str = 'sum',
                 stack_reduction: str = 'mean',
                 offset_norm: str = 'objects',
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_stacks < 1:
            raise ValueError(f'num_stacks must be >= 1, got {num_stacks}')
        if pred_kernel_size not in (1, 3):
            raise ValueError(f'pred_kernel_size must be 1 (Squeeze) or 3 (CornerNet), got {pred_kernel_size}')
        for name, value, choices in (('corner_reduction', corner_reduction, CORNER_REDUCTIONS),
                                     ('stack_reduction', stack_reduction, STACK_REDUCTIONS),
                                     ('offset_norm', offset_norm, OFFSET_NORMS)):
            if value not in choices:
                raise ValueError(f'{name} must be one of {choices}, got {value!r}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_stacks = num_stacks
        self.pool_channels = pool_channels
        self.feat_channels = feat_channels
        self.pred_kernel_size = pred_kernel_size
        self.heatmap_bias = heatmap_bias
        self.corner_reduction = corner_reduction
        self.stack_reduction = stack_reduction
        self.offset_norm = offset_norm

        def pool(corner: str) -> nn.Module:
            cfg = copy.deepcopy(dict(corner_pool))
            cfg.update(in_channels=in_channels, pool_channels=pool_channels, corner=corner)
            return MODELS.build(cfg)

        def preds(out_channels: int) -> nn.ModuleList:
            return nn.ModuleList([
                _pred_module(in_channels, feat_channels, out_channels, pred_kernel_size) for _ in range(num_stacks)
            ])

        self.tl_modules = nn.ModuleList([pool('top_left') for _ in range(num_stacks)])
        self.br_modules = nn.ModuleList([pool('bottom_right') for _ in range(num_stacks)])
        self.tl_heats, self.br_heats = preds(num_classes), preds(num_classes)
        self.tl_tags, self.br_tags = preds(1), preds(1)
        self.tl_offs, self.br_offs = preds(2), preds(2)

        self.loss_heatmap = MODELS.build(loss_heatmap)
        self.loss_embedding = MODELS.build(loss_embedding)
        self.loss_offset = MODELS.build(loss_offset)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.assigner = TASK_UTILS.build((train_cfg or {}).get('assigner', DEFAULT_ASSIGNER))
        test_cfg = test_cfg or {}
        decoder_cfg = copy.deepcopy(test_cfg.get('decoder', None))
        if decoder_cfg is None:
            decoder_cfg = dict(DEFAULT_DECODER)
            for key, arg in MMDET_TEST_KEYS.items():
                if key in test_cfg:
                    decoder_cfg[arg] = test_cfg[key]
        self.decoder = TASK_UTILS.build(decoder_cfg)

    @staticmethod
    def convert_original_state_dict(state_dict: Mapping[str, Any],
                                    prefix: str = 'bbox_head.') -> Tuple[Dict[str, Any], List[str]]:
        """Rename the head entries of an original CornerNet / CornerNet-Squeeze checkpoint to this head's keys.

        Args:
            state_dict (Mapping[str, Any]): original keys (with or without the ``module.`` prefix of the released
                files) to values (tensors, or shapes: values are passed through).
            prefix (str): prefix of the head in the detector. Defaults to ``'bbox_head.'``.

        Returns:
            tuple[dict, list[str]]: the head entries under mmkp's keys, and the keys that are not head keys (the
            backbone's), in order.
        """
        pool_module = MODELS.get('CornerPoolModule')  # mmkp.models.layers; renames p_bn1 / bn1
        out, left = {}, []
        pattern = re.compile(r'^(tl|br)_(modules|cnvs|heats|tags|offs|regrs)\.(\d+)\.(.+)$')
        for key, value in state_dict.items():
            match = pattern.match(key[len('module.'):] if key.startswith('module.') else key)
            if match is None:
                left.append(key)
                continue
            corner, part, stack, rest = match.groups()
            part = {'cnvs': 'modules', 'regrs': 'offs'}.get(part, part)
            if part == 'modules':
                rest = next(iter(pool_module.convert_original_state_dict({rest: None})))
            out[f'{prefix}{corner}_{part}.{stack}.{rest}'] = value
        return out, left

    def init_weights(self) -> None:
        """PyTorch's default init for every convolution (the original sets none), heatmap bias ``heatmap_bias``.

        ``ConvModule`` (inside the corner-pool modules) re-initialises its convolution with Kaiming-normal; this
        restores the original's init, as mmdet's ``HourglassNet`` does for the backbone. With ``init_cfg`` set, that
        is used instead.
        """
        super().init_weights()
        if self.init_cfg is not None:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
        for heat in list(self.tl_heats) + list(self.br_heats):
            nn.init.constant_(heat[-1].bias, self.heatmap_bias)

    def forward_single(self, x: Tensor, stack: int) -> Tuple[Tensor, ...]:
        """Outputs of one stack.

        Args:
            x (Tensor): (B, in_channels, H, W) feature of that stack.
            stack (int): stack index (negative counts from the end).

        Returns:
            tuple[Tensor]: ``tl_heat``, ``br_heat`` (B, num_classes, H, W) logits, ``tl_tag``, ``br_tag``
            (B, 1, H, W) embeddings, ``tl_off``, ``br_off`` (B, 2, H, W) offsets (dx, dy) in feature cells.
        """
        tl = self.tl_modules[stack](x)
        br = self.br_modules[stack](x)
        return (self.tl_heats[stack](tl), self.br_heats[stack](br), self.tl_tags[stack](tl), self.br_tags[stack](br),
                self.tl_offs[stack](tl), self.br_offs[stack](br))

    def forward(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], ...]:
        """Raw maps of every stack.

        Args:
            x (Sequence[Tensor]): ``num_stacks`` features (B, in_channels, H, W), first stack first.

        Returns:
            tuple[list[Tensor]]: ``tl_heats``, ``br_heats``, ``tl_tags``, ``br_tags``, ``tl_offs``, ``br_offs``, each
            a list over stacks of the maps of :meth:`forward_single` (the output order of mmdet's ``CornerHead``).

        Raises:
            ValueError: when ``len(x) != num_stacks``.
        """
        self._check_stacks(x)
        outs = [self.forward_single(feat, i) for i, feat in enumerate(x)]
        return tuple(list(maps) for maps in zip(*outs))

    def _check_stacks(self, x: Sequence[Tensor]) -> None:
        if len(x) != self.num_stacks:
            raise ValueError(f'{type(self).__name__} has num_stacks={self.num_stacks} but got {len(x)} features; '
                             'set bbox_head.num_stacks to the number of backbone outputs')

    def loss_by_feat(self,
                     tl_heats: List[Tensor],
                     br_heats: List[Tensor],
                     tl_tags: List[Tensor],
                     br_tags: List[Tensor],
                     tl_offs: List[Tensor],
                     br_offs: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """CornerNet losses of every stack (targets computed once, on the last stack's shape).

        Args:
            tl_heats, br_heats, tl_tags, br_tags, tl_offs, br_offs (list[Tensor]): outputs of :meth:`forward`.
            batch_gt_instances (list[InstanceData]): ``bboxes`` (x1, y1, x2, y2) in input pixels and ``labels``.
            batch_img_metas (list[dict]): metas with ``batch_input_shape`` (and ``img_shape`` for clipping).
            batch_gt_instances_ignore: unused (the original has no ignore regions).

        Returns:
            dict[str, Tensor]: ``loss_heatmap``, ``loss_pull``, ``loss_push``, ``loss_offset`` (scalars).
        """
        feat_shape = tl_heats[-1].shape[-2:]
        input_shape = batch_img_metas[0]['batch_input_shape']
        targets = self.assigner.assign(batch_gt_instances, feat_shape, input_shape, self.num_classes,
                                       batch_img_metas)
        mask = targets.mask
        num_objects = mask.sum().float()
        if self.offset_norm == 'objects':
            avg_factor = num_objects + 1e-4
        else:
            avg_factor = num_objects.clamp(min=1)
        off_weight = mask.unsqueeze(-1).expand(-1, -1, 2).to(tl_offs[-1].dtype)
        tl_index, br_index = targets.indices['top_left'], targets.indices['bottom_right']
        tl_heat_target = targets.heatmap_for(self.loss_heatmap, 'top_left')
        br_heat_target = targets.heatmap_for(self.loss_heatmap, 'bottom_right')
        corner_scale = 1.0 if self.corner_reduction == 'sum' else 0.5
        loss_heat, loss_pull, loss_push, loss_off = 0, 0, 0, 0
        for tl_heat, br_heat, tl_tag, br_tag, tl_off, br_off in zip(tl_heats, br_heats, tl_tags, br_tags, tl_offs,
                                                                    br_offs):
            loss_heat = loss_heat + corner_scale * (
                self.loss_heatmap(tl_heat, tl_heat_target) +
                self.loss_heatmap(br_heat, br_heat_target))
            pull, push = self.loss_embedding(gather_feat(tl_tag, tl_index), gather_feat(br_tag, br_index), mask)
            loss_pull = loss_pull + pull
            loss_push = loss_push + push
            loss_off = loss_off + corner_scale * (
                self.loss_offset(gather_feat(tl_off, tl_index), targets.offsets['top_left'], weight=off_weight,
                                 avg_factor=avg_factor) +
                self.loss_offset(gather_feat(br_off, br_index), targets.offsets['bottom_right'], weight=off_weight,
                                 avg_factor=avg_factor))
        scale = 1.0 / len(tl_heats) if self.stack_reduction == 'mean' else 1.0
        return dict(
            loss_heatmap=loss_heat * scale,
            loss_pull=loss_pull * scale,
            loss_push=loss_push * scale,
            loss_offset=loss_off * scale)

    def predict(self,
                x: Tuple[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = False,
                with_nms: bool = True) -> InstanceList:
        """Detections of the last stack only (the original's ``_test``: the other stacks' modules are not run).

        Args:
            x (tuple[Tensor]): ``num_stacks`` features.
            batch_data_samples (list[DetDataSample]): the batch's samples (metas).
            rescale (bool): boxes in original-image pixels. Defaults to False.
            with_nms (bool): apply ``test_cfg.nms`` and ``max_per_img``; False returns every valid decoded pair
                with its corner scores (what :class:`CornerNetTTAModel` merges). Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes``, ``scores``, ``labels`` (and ``tl_scores`` / ``br_scores``
            without NMS).
        """
        self._check_stacks(x)
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        outs = self.forward_single(x[-1], -1)
        return self.predict_by_feat(*[[o] for o in outs], batch_img_metas=batch_img_metas, rescale=rescale,
                                    with_nms=with_nms)

    def predict_by_feat(self,
                        tl_heats: List[Tensor],
                        br_heats: List[Tensor],
                        tl_tags: List[Tensor],
                        br_tags: List[Tensor],
                        tl_offs: List[Tensor],
                        br_offs: List[Tensor],
                        batch_img_metas: Optional[List[dict]] = None,
                        rescale: bool = True,
                        with_nms: bool = True) -> InstanceList:
        """Decode the last stack's maps into boxes (see :class:`CornerPairDecoder`), then soft-NMS.

        Args:
            tl_heats, br_heats, tl_tags, br_tags, tl_offs, br_offs (list[Tensor]): per-stack maps; only the last
                element of each list is used.
            batch_img_metas (list[dict]): metas of the batch.
            rescale (bool): boxes in original-image pixels. Defaults to True.
            with_nms (bool): see :meth:`predict`. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes`` (K, 4), ``scores`` (K,) descending, ``labels`` (K,).
        """
        results = self.decoder.decode(tl_heats[-1], br_heats[-1], tl_tags[-1], br_tags[-1], tl_offs[-1],
                                      br_offs[-1], batch_img_metas, rescale=rescale)
        if not with_nms:
            return results
        cfg = self.test_cfg or ConfigDict()
        nms_cfg = cfg.get('nms', DEFAULT_NMS)
        max_per_img = cfg.get('max_per_img', 100)
        return [corner_nms(r, nms_cfg, max_per_img) for r in results]  # per image (per-image NMS calls)
