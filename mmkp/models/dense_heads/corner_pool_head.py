"""CornerNet / CornerNet-Squeeze head, and the core of the corner family: keypoint types as an argument, named
outputs per keypoint type and stack, targets from one ``get_targets`` step, per-keypoint per-stack losses."""
import copy
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.utils import unpack_gt_instances
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_flip
from mmdet.utils import ConfigType, InstanceList, OptConfigType, OptInstanceList, OptMultiConfig
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmkp.registry import MODELS, TASK_UTILS
from ..task_modules.assigners.gaussian_heatmap_assigner import HeatmapTargets
from ..utils.heatmap import gather_feat
from ..utils.soft_nms_merge import corner_nms
from .keypoint_head import KeypointHeadMixin, KeypointMaps

#: Targets of CornerNet-Lite (princeton-vl/CornerNet-Lite@6a54505 ``core/sample/cornernet.py``,
#: ``configs/CornerNet.json``): corrected radius formula with IoU 0.3, sigma = d / 6, boxes clipped to
#: [0, W - 1] x [0, H - 1] of the input, ratio output / input (128 / 511). ``keypoints`` come from the head.
DEFAULT_ASSIGNER = dict(
    type='GaussianHeatmapAssigner',
    radius_formula='corrected',
    min_overlap=0.3,
    sigma_factor=6.0,
    clip_to='input')
DEFAULT_DECODER = dict(type='CornerPairDecoder', topk=100, local_maximum_kernel=3, ae_threshold=0.5, num_dets=1000)
#: Gaussian soft-NMS of the original (``core/external/nms.pyx``: sigma 0.5, discard below 0.001, "+1" box areas).
DEFAULT_NMS = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1)
#: ``nms_detections``' default: take the NMS config from ``test_cfg``.
FROM_TEST_CFG: Any = 'test_cfg'
#: mmdet ``CornerHead`` ``test_cfg`` keys and the decoder arguments they set.
MMDET_TEST_KEYS = dict(
    corner_topk='topk', local_maximum_kernel='local_maximum_kernel', distance_threshold='ae_threshold')

KEYPOINT_TYPES = ('top_left', 'bottom_right', 'center')
#: Keypoint types that carry an embedding (the corners, grouped into pairs by it).
EMBEDDING_KEYPOINTS = ('top_left', 'bottom_right')
#: Module-name prefixes of the keypoint types (the originals' ``tl_`` / ``br_`` / ``ct_``).
KEYPOINT_PREFIXES = dict(top_left='tl', bottom_right='br', center='ct')
#: Branches and the module-name suffixes the originals use for them (``tl_heats``, ``tl_tags``, ``tl_offs``).
BRANCH_SUFFIXES = dict(heatmap='heats', embedding='tags', offset='offs')

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
class CornerPoolHead(KeypointHeadMixin, BaseDenseHead):
    """CornerNet head (Law & Deng, ECCV 2018), CornerNet-Squeeze head (Law et al., 2019), and the corner-family core.

    Per hourglass stack (princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet.py``, ``CornerNet_Squeeze.py``,
    ``core/models/py_utils/modules.py::hg_net``) and per keypoint type of ``keypoints``: a pooling module (corners:
    ``corner_pool``, :class:`mmkp.models.layers.CornerPoolModule` by default, top + left / bottom + right pools;
    center: ``center_pool``), and on it the prediction modules -- ``heatmap`` (``num_classes`` channels, last bias
    ``heatmap_bias``), ``embedding`` (1 channel, corners only) and ``offset`` (2 channels) -- each conv
    (``pred_kernel_size``, bias) -> ReLU -> conv1x1 (3x3 for CornerNet, 1x1 for Squeeze). Every stack is supervised;
    only the last one is evaluated at test time (the original's ``_test``).

    Extending it (see ARCHITECTURE section 7): the keypoint types are an argument, so the keypoint-triplet head is
    this head with ``keypoints=('top_left', 'bottom_right', 'center')``, cascade corner pooling and center pooling
    by config, and a decoder that runs the center-region check; CornerNet-Saccade adds attention branches in a
    subclass (:meth:`forward_single`, :meth:`loss_by_targets` and the ``loss_*_single`` helpers are the hooks).

    Modules are named as the originals, per keypoint type prefix ``tl`` / ``br`` / ``ct``: ``{p}_modules.{s}`` (the
    pooling module of stack ``s``) and ``{p}_{heats,tags,offs}.{s}`` (prediction modules), so the released
    checkpoints' keys map one to one (:mod:`mmkp.converters.cornernet`).

    Outputs (:meth:`forward`): a :class:`KeypointMaps`, ``maps[keypoint][branch]`` a list over stacks of
    (B, C, H, W) maps; heatmaps are logits, offsets (dx, dy) in feature cells. ``maps.to_tuple()`` gives mmdet
    ``CornerHead``'s positional order.

    Training (``train_cfg.assigner``, default :data:`DEFAULT_ASSIGNER`, CornerNet-Lite's targets, with the head's
    keypoint types): the losses of CornerNet-Lite ``core/models/py_utils/losses.py::CornerNet_Loss`` on every
    stack:

    * heatmaps: ``loss_heatmap`` (:class:`HeatmapFocalLoss` on logits with the original's clamp), each keypoint type
      normalised by its own number of positives; with ``mask_ignored`` the objects of
      ``batch_gt_instances_ignore`` zero the loss under their Gaussians (CornerNet-Saccade's ``_focal_loss_mask``);
    * embeddings gathered at the objects' corners: ``loss_embedding`` (:class:`AssociativeEmbeddingPullPushLoss`,
      pull and push weight 0.1, summed over images);
    * offsets gathered at the objects' keypoints: ``loss_offset`` (mmdet ``SmoothL1Loss``, beta 1) summed over
      objects and divided by #objects + 1e-4 (``offset_norm='objects'``).

    Original quirks kept by default, each behind a named option (mmdet ``CornerHead``'s choice in brackets):
    ``corner_reduction='sum'``: the heatmap (and offset) losses of the keypoint types are added ['mean'];
    ``stack_reduction='mean'``: every loss is divided by the number of stacks ['sum', as mmengine sums mmdet's
    per-level lists]; ``offset_norm='objects'``: #objects + 1e-4 ['clamped': max(#objects, 1)].

    Testing (``test_cfg``): ``decoder`` (default :data:`DEFAULT_DECODER`; mmdet's ``corner_topk`` /
    ``local_maximum_kernel`` / ``distance_threshold`` keys are honoured), ``nms`` (default :data:`DEFAULT_NMS`,
    Gaussian soft-NMS sigma 0.5 / 0.001 with the original's "+1" areas; ``dict(type='soft_nms_merge', ...,
    weight_exp=10)`` for the multi-scale merge; None for none) and ``max_per_img`` (100). See
    :func:`mmkp.models.utils.soft_nms_merge.corner_nms` for what differs from the original's post-processing.
    Test-time augmentation (:class:`mmkp.models.test_time_augs.CornerNetTTAModel`) calls :meth:`unflip_detections`,
    :meth:`merge_view_detections` and :meth:`nms_detections`, which subclasses override.

    Args:
        num_classes (int): number of classes (heatmap channels).
        in_channels (int): channels of each stack's feature (the original's 256). Defaults to 256.
        num_stacks (int): number of input features, each with its own modules. Defaults to 2.
        pool_channels (int): channels of the pooling branches. Defaults to 128.
        feat_channels (int): channels of the first conv of each prediction module. Defaults to 256.
        pred_kernel_size (int): kernel of that conv: 3 (CornerNet) or 1 (CornerNet-Squeeze). Defaults to 3.
        heatmap_bias (float): last bias of the heatmap modules. Defaults to -2.19.
        keypoints (Sequence[str]): keypoint types, among ``'top_left'``, ``'bottom_right'`` (both required) and
            ``'center'``. Defaults to ``('top_left', 'bottom_right')``.
        corner_pool (dict): config of the corner pooling module, built once per stack and corner with
            ``in_channels``, ``pool_channels`` and ``corner`` filled in. Defaults to ``dict(type='CornerPoolModule')``.
        center_pool (dict): config of the center pooling module (``in_channels`` and ``pool_channels`` filled in),
            used when ``'center'`` is a keypoint type. Defaults to ``dict(type='CenterPoolModule')``.
        loss_heatmap (dict): heatmap loss on logits. Defaults to ``HeatmapFocalLoss`` (alpha 2, beta 4, clamp 1e-4).
        loss_embedding (dict): pull / push loss. Defaults to ``AssociativeEmbeddingPullPushLoss`` (0.1, 0.1).
        loss_offset (dict): offset loss, called with ``avg_factor``. Defaults to ``SmoothL1Loss`` (beta 1, weight 1).
        corner_reduction (str): ``'sum'`` or ``'mean'`` of the heatmap / offset losses over keypoint types.
            Defaults to ``'sum'``.
        stack_reduction (str): ``'mean'`` or ``'sum'`` over stacks. Defaults to ``'mean'``.
        offset_norm (str): ``'objects'`` (#objects + 1e-4) or ``'clamped'`` (max(#objects, 1)). Defaults to
            ``'objects'``.
        mask_ignored (bool): zero the heatmap loss under the Gaussians of ``batch_gt_instances_ignore`` (mmdet fills
            it with COCO's crowd boxes). Defaults to False: the originals of CornerNet and Squeeze have no ignore
            regions (CornerNet-Saccade sets True for its cut and small objects).
        train_cfg (dict, optional): ``assigner``.
        test_cfg (dict, optional): ``decoder``, ``nms``, ``max_per_img``.
        init_cfg (dict, optional): mmengine init config. Defaults to None: PyTorch's default init for every
            convolution and BN weight 1 / bias 0, as the original (which sets none), and the heatmap bias.

    Raises:
        ValueError: on bad option values, keypoint types the assigner does not draw, or when the number of features
            differs from ``num_stacks``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int = 256,
                 num_stacks: int = 2,
                 pool_channels: int = 128,
                 feat_channels: int = 256,
                 pred_kernel_size: int = 3,
                 heatmap_bias: float = -2.19,
                 keypoints: Sequence[str] = ('top_left', 'bottom_right'),
                 corner_pool: ConfigType = dict(type='CornerPoolModule'),
                 center_pool: ConfigType = dict(type='CenterPoolModule'),
                 loss_heatmap: ConfigType = dict(
                     type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
                 loss_embedding: ConfigType = dict(
                     type='AssociativeEmbeddingPullPushLoss', pull_weight=0.1, push_weight=0.1),
                 loss_offset: ConfigType = dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
                 corner_reduction: str = 'sum',
                 stack_reduction: str = 'mean',
                 offset_norm: str = 'objects',
                 mask_ignored: bool = False,
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
        keypoints = tuple(keypoints)
        if (len(set(keypoints)) != len(keypoints) or not set(keypoints) <= set(KEYPOINT_TYPES)
                or not set(EMBEDDING_KEYPOINTS) <= set(keypoints)):
            raise ValueError(f'keypoints must hold top_left and bottom_right once each, and may add center; '
                             f'got {keypoints}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_stacks = num_stacks
        self.pool_channels = pool_channels
        self.feat_channels = feat_channels
        self.pred_kernel_size = pred_kernel_size
        self.heatmap_bias = heatmap_bias
        self.keypoints = keypoints
        self.corner_reduction = corner_reduction
        self.stack_reduction = stack_reduction
        self.offset_norm = offset_norm
        self.mask_ignored = bool(mask_ignored)

        def pool(keypoint: str) -> nn.Module:
            cfg = copy.deepcopy(dict(center_pool if keypoint == 'center' else corner_pool))
            cfg.update(in_channels=in_channels, pool_channels=pool_channels)
            if keypoint != 'center':
                cfg.update(corner=keypoint)
            return MODELS.build(cfg)

        # creation order = the original's (every pool module, then heatmaps, embeddings, offsets of each keypoint
        # type): the random initial weights of a seeded run depend on it
        for keypoint in keypoints:
            setattr(self, f'{KEYPOINT_PREFIXES[keypoint]}_modules',
                    nn.ModuleList([pool(keypoint) for _ in range(num_stacks)]))
        for branch in BRANCH_SUFFIXES:
            for keypoint in keypoints:
                channels = self.branch_channels(keypoint).get(branch)
                if channels is not None:
                    setattr(self, self._module_name(keypoint, branch), nn.ModuleList([
                        _pred_module(in_channels, feat_channels, channels, pred_kernel_size)
                        for _ in range(num_stacks)
                    ]))

        self.loss_heatmap = MODELS.build(loss_heatmap)
        self.loss_embedding = MODELS.build(loss_embedding)
        self.loss_offset = MODELS.build(loss_offset)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        assigner_cfg = copy.deepcopy(dict((train_cfg or {}).get('assigner', DEFAULT_ASSIGNER)))
        assigner_cfg.setdefault('keypoints', keypoints)
        self.assigner = TASK_UTILS.build(assigner_cfg)
        missing = [k for k in keypoints if k not in getattr(self.assigner, 'keypoints', keypoints)]
        if missing:
            raise ValueError(f'train_cfg.assigner draws {self.assigner.keypoints}, but the head also needs {missing}')
        self.decoder = self.build_decoder(test_cfg, DEFAULT_DECODER, MMDET_TEST_KEYS)

    def branch_channels(self, keypoint: str) -> Dict[str, int]:
        """Output channels of each prediction branch of keypoint type ``keypoint``."""
        channels = dict(heatmap=self.num_classes, offset=2)
        if keypoint in EMBEDDING_KEYPOINTS:
            channels['embedding'] = 1
        return {branch: channels[branch] for branch in BRANCH_SUFFIXES if branch in channels}

    @staticmethod
    def _module_name(keypoint: str, branch: str) -> str:
        return f'{KEYPOINT_PREFIXES[keypoint]}_{BRANCH_SUFFIXES[branch]}'

    def init_weights(self) -> None:
        """PyTorch's default init for every convolution (the original sets none), heatmap bias ``heatmap_bias``.

        ``ConvModule`` (inside the pooling modules) re-initialises its convolution with Kaiming-normal; this
        restores the original's init, as mmdet's ``HourglassNet`` does for the backbone. With ``init_cfg`` set, that
        is used instead.
        """
        super().init_weights()
        if self.init_cfg is not None:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
        for keypoint in self.keypoints:
            for heat in getattr(self, self._module_name(keypoint, 'heatmap')):
                nn.init.constant_(heat[-1].bias, self.heatmap_bias)

    def forward_single(self, x: Tensor, stack: int) -> Dict[str, Dict[str, Tensor]]:
        """Outputs of one stack.

        Args:
            x (Tensor): (B, in_channels, H, W) feature of that stack.
            stack (int): stack index (negative counts from the end).

        Returns:
            dict[str, dict[str, Tensor]]: ``out[keypoint][branch]``: ``heatmap`` (B, num_classes, H, W) logits,
            ``embedding`` (B, 1, H, W) (corners), ``offset`` (B, 2, H, W) (dx, dy) in feature cells.
        """
        out = {}
        for keypoint in self.keypoints:
            feat = getattr(self, f'{KEYPOINT_PREFIXES[keypoint]}_modules')[stack](x)
            out[keypoint] = {
                branch: getattr(self, self._module_name(keypoint, branch))[stack](feat)
                for branch in self.branch_channels(keypoint)
            }
        return out

    def forward(self, x: Sequence[Tensor]) -> KeypointMaps:
        """Raw maps of every stack.

        Args:
            x (Sequence[Tensor]): ``num_stacks`` features (B, in_channels, H, W), first stack first.

        Returns:
            KeypointMaps: ``maps[keypoint][branch]``, a list over stacks of the maps of :meth:`forward_single`.

        Raises:
            ValueError: when ``len(x) != num_stacks``.
        """
        self._check_stacks(x)
        return KeypointMaps.from_stacks([self.forward_single(feat, i) for i, feat in enumerate(x)])

    def loss(self, x: Tuple[Tensor], batch_data_samples: SampleList) -> dict:
        """Losses of a batch (mmdet ``BaseDenseHead.loss`` with named outputs).

        Args:
            x (tuple[Tensor]): ``num_stacks`` features.
            batch_data_samples (list[DetDataSample]): ``gt_instances``, ``ignored_instances`` and metas.

        Returns:
            dict[str, Tensor]: see :meth:`loss_by_feat`.
        """
        outputs = self(x)
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = unpack_gt_instances(batch_data_samples)
        return self.loss_by_feat(outputs, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)

    def get_targets(self,
                    outputs: KeypointMaps,
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None) -> HeatmapTargets:
        """Targets of every keypoint type, from one assigner call on the last stack's map shape.

        Args:
            outputs (KeypointMaps): outputs of :meth:`forward` (only shapes are read).
            batch_gt_instances (list[InstanceData]): ``bboxes`` (x1, y1, x2, y2) in input pixels and ``labels``.
            batch_img_metas (list[dict]): metas with ``batch_input_shape`` (and ``img_shape`` for clipping).
            batch_gt_instances_ignore (list[InstanceData], optional): ignored objects; used with ``mask_ignored``.

        Returns:
            HeatmapTargets: heatmaps, indices, offsets, mask (and ``weights`` with ignored objects).
        """
        feat_shape = outputs[self.keypoints[0]]['heatmap'][-1].shape[-2:]
        input_shape = batch_img_metas[0]['batch_input_shape']
        ignores = batch_gt_instances_ignore if self.mask_ignored else None
        return self.assigner.assign(batch_gt_instances, feat_shape, input_shape, self.num_classes, batch_img_metas,
                                    batch_gt_instances_ignore=ignores)

    def loss_by_feat(self,
                     outputs: KeypointMaps,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of every stack: :meth:`get_targets`, then :meth:`loss_by_targets`.

        Args:
            outputs (KeypointMaps): outputs of :meth:`forward` (``KeypointMaps.from_tuple`` names mmdet-ordered
                lists).
            batch_gt_instances (list[InstanceData]): ``bboxes`` in input pixels and ``labels``.
            batch_img_metas (list[dict]): metas with ``batch_input_shape`` (and ``img_shape`` for clipping).
            batch_gt_instances_ignore (list[InstanceData], optional): see :meth:`get_targets`.

        Returns:
            dict[str, Tensor]: ``loss_heatmap``, ``loss_pull``, ``loss_push``, ``loss_offset`` (scalars).
        """
        targets = self.get_targets(outputs, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)
        return self.loss_by_targets(outputs, targets)

    def loss_by_targets(self, outputs: KeypointMaps, targets: HeatmapTargets) -> dict:
        """CornerNet losses of every stack and keypoint type against computed targets (see the class docstring).

        Returns:
            dict[str, Tensor]: ``loss_heatmap``, ``loss_pull``, ``loss_push``, ``loss_offset`` (scalars).
        """
        num_objects = targets.mask.sum().float()
        avg_factor = num_objects + 1e-4 if self.offset_norm == 'objects' else num_objects.clamp(min=1)
        keypoint_scale = 1.0 if self.corner_reduction == 'sum' else 1.0 / len(self.keypoints)
        num_stacks = outputs.num_stacks
        loss_heat, loss_pull, loss_push, loss_off = 0, 0, 0, 0
        for stack in range(num_stacks):
            maps = outputs.stack(stack)
            loss_heat = loss_heat + keypoint_scale * sum(
                self.loss_heatmap_single(maps[k]['heatmap'], targets, k) for k in self.keypoints)
            pull, push = self.loss_embedding_single(maps, targets)
            loss_pull = loss_pull + pull
            loss_push = loss_push + push
            loss_off = loss_off + keypoint_scale * sum(
                self.loss_offset_single(maps[k]['offset'], targets, k, avg_factor) for k in self.keypoints)
        scale = 1.0 / num_stacks if self.stack_reduction == 'mean' else 1.0
        return dict(
            loss_heatmap=loss_heat * scale,
            loss_pull=loss_pull * scale,
            loss_push=loss_push * scale,
            loss_offset=loss_off * scale)

    def loss_heatmap_single(self, logits: Tensor, targets: HeatmapTargets, keypoint: str) -> Tensor:
        """Heatmap loss of one stack and keypoint type; (B, num_classes, H, W) logits; weighted by the ignore mask."""
        weight = targets.weight_for(keypoint)
        target = targets.heatmap_for(self.loss_heatmap, keypoint)
        if weight is None:
            return self.loss_heatmap(logits, target)
        return self.loss_heatmap(logits, target, weight=weight)

    def loss_embedding_single(self, maps: Mapping[str, Mapping[str, Tensor]],
                              targets: HeatmapTargets) -> Tuple[Tensor, Tensor]:
        """Pull and push losses of one stack: the corner embeddings gathered at the objects' corner cells."""
        tl = gather_feat(maps['top_left']['embedding'], targets.indices['top_left'])
        br = gather_feat(maps['bottom_right']['embedding'], targets.indices['bottom_right'])
        return self.loss_embedding(tl, br, targets.mask)

    def loss_offset_single(self, offset: Tensor, targets: HeatmapTargets, keypoint: str, avg_factor: Tensor) -> Tensor:
        """Offset loss of one stack and keypoint type: (B, 2, H, W) offsets gathered at the objects' cells."""
        weight = targets.mask.unsqueeze(-1).expand(-1, -1, 2).to(offset.dtype)
        return self.loss_offset(gather_feat(offset, targets.indices[keypoint]), targets.offsets[keypoint],
                                weight=weight, avg_factor=avg_factor)

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
            with_nms (bool): apply :meth:`nms_detections`; False returns every valid decoded box with its extra
                fields (what :class:`CornerNetTTAModel` merges). Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes``, ``scores``, ``labels`` (and the decoder's extra fields, e.g.
            ``tl_scores`` / ``br_scores``, without NMS).
        """
        self._check_stacks(x)
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        outputs = KeypointMaps.from_stacks([self.forward_single(x[-1], -1)])
        return self.predict_by_feat(outputs, batch_img_metas=batch_img_metas, rescale=rescale, with_nms=with_nms)

    def predict_by_feat(self,
                        outputs: KeypointMaps,
                        batch_img_metas: Optional[List[dict]] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Decode the last stack's maps into boxes (``self.decoder.decode_outputs``), then :meth:`nms_detections`.

        Args:
            outputs (KeypointMaps): per-stack maps; only the last stack is used.
            batch_img_metas (list[dict]): metas of the batch.
            rescale (bool): boxes in original-image pixels. Defaults to False (mmdet's default).
            with_nms (bool): see :meth:`predict`. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes`` (K, 4), ``scores`` (K,) descending, ``labels`` (K,).
        """
        results = self.decoder.decode_outputs(outputs.stack(-1), batch_img_metas, rescale=rescale)
        if not with_nms:
            return results
        return [self.nms_detections(r) for r in results]  # per image (per-image NMS calls)

    def nms_detections(self, results: InstanceData, nms_cfg: Optional[dict] = FROM_TEST_CFG,
                       max_per_img: Optional[int] = None) -> InstanceData:
        """Soft-NMS (or soft-NMS merge) and the top ``max_per_img`` of one image's raw detections.

        Args:
            results (InstanceData): ``bboxes``, ``scores``, ``labels`` (and ``tl_scores`` / ``br_scores`` for the
                merge).
            nms_cfg (dict, optional): the NMS config; None for none. Defaults to ``test_cfg.nms``
                (:data:`DEFAULT_NMS` when unset).
            max_per_img (int, optional): defaults to ``test_cfg.max_per_img`` (100).

        Returns:
            InstanceData: ``bboxes``, ``scores``, ``labels``.
        """
        cfg = self.test_cfg or ConfigDict()
        nms_cfg = cfg.get('nms', DEFAULT_NMS) if nms_cfg is FROM_TEST_CFG else nms_cfg
        max_per_img = cfg.get('max_per_img', 100) if max_per_img is None else max_per_img
        return corner_nms(results, nms_cfg, max_per_img)

    def unflip_detections(self, results: InstanceData, img_meta: dict) -> InstanceData:
        """Map the raw detections of a flipped test view back onto the unflipped original image.

        Args:
            results (InstanceData): raw detections of the view in original-image pixels (``bboxes``, ...).
            img_meta (dict): the view's metas (``flip``, ``flip_direction``, ``ori_shape``).

        Returns:
            InstanceData: the same fields, ``bboxes`` mirrored with mmdet's ``bbox_flip`` when the view was flipped.
        """
        if not img_meta.get('flip', False):
            return results
        results = results.clone()
        results.bboxes = bbox_flip(results.bboxes, img_meta['ori_shape'], img_meta['flip_direction'])
        return results

    def merge_view_detections(self, results: List[InstanceData], img_metas: List[dict]) -> InstanceData:
        """Pool the raw detections of every test view of one image (already un-flipped), before NMS.

        Every field the views share is kept (the decoder's extra fields, e.g. ``tl_scores`` / ``br_scores`` for the
        soft-NMS merge). The keypoint-triplet head overrides this with its center-region check.

        Args:
            results (list[InstanceData]): per view, in original-image pixels.
            img_metas (list[dict]): per view, its metas.

        Returns:
            InstanceData: the concatenation.
        """
        keys = set(results[0].keys())
        for r in results[1:]:
            keys &= set(r.keys())
        return InstanceData.cat([InstanceData(**{k: r.get(k) for k in sorted(keys)}) for r in results])
