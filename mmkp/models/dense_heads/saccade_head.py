"""CornerNet-Saccade head: CornerNet's corner branches plus attention maps on the hourglasses' merge outputs."""
import copy
from typing import Dict, List, Sequence, Tuple

from mmcv.cnn import ConvModule
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, InstanceList, OptConfigType, OptInstanceList, OptMultiConfig
from torch import Tensor, nn

from mmkp.registry import MODELS, TASK_UTILS
from .corner_pool_head import CornerPoolHead
from .keypoint_head import KeypointMaps

#: Corner targets of CornerNet-Saccade (princeton-vl/CornerNet-Lite@6a54505 ``core/sample/cornernet_saccade.py``,
#: ``configs/CornerNet_Saccade.json``): corrected radius formula with IoU 0.5 (``gaussian_iou``), sigma = d / 6,
#: ratio 64 / 255 read off the shapes, boxes clipped to the crop.
SACCADE_ASSIGNER = dict(
    type='GaussianHeatmapAssigner',
    radius_formula='corrected',
    min_overlap=0.5,
    sigma_factor=6.0,
    clip_to='input')
SACCADE_ATTENTION_ASSIGNER = dict(type='SaccadeAttentionAssigner')
#: Names of the attention maps, innermost (coarsest) first, by the object sizes they mark.
ATTENTION_SCALES = ('large', 'medium', 'small')
ATTENTION_STACK_REDUCTIONS = ('mean_twice', 'mean')


@MODELS.register_module()
class SaccadeHead(CornerPoolHead):
    """CornerNet-Saccade head (Law et al., CornerNet-Lite, 2019): :class:`CornerPoolHead` + attention branches.

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet_Saccade.py`` and
    ``core/models/py_utils/modules.py::saccade_net`` (DETECTORS.md 4.2): per stack the corner branches of
    CornerNet (inherited unchanged: corner pooling, heatmap / embedding / offset, 3x3 prediction modules) on the
    stack's feature, and three attention branches on that stack's merge outputs (``up_start=0``), each
    ``convolution(3, c, 256, with_bn=False)`` (conv3x3 + bias + ReLU) -> conv1x1 (1 channel, bias
    ``attention_bias``), modules ``att_modules.{stack}.{scale}`` as the original (keys ``0.conv.*``, ``1.*``).

    Input: what :class:`mmkp.models.backbones.Hourglass54` returns, ``num_stacks`` features then
    ``num_stacks * len(attention_channels)`` merge outputs (stack by stack, innermost first).

    Outputs (:meth:`forward`): the :class:`KeypointMaps` of :class:`CornerPoolHead` plus the group ``'attention'``
    whose branches :data:`ATTENTION_SCALES` (``'large'`` = the coarsest map, 16 x 16 for a 255 input; ``'medium'``
    32 x 32; ``'small'`` 64 x 64) hold per stack the (B, 1, h, w) logits.

    Training (``princeton-vl/CornerNet-Lite@6a54505 core/models/py_utils/losses.py::CornerNet_Saccade_Loss``,
    DETECTORS.md 4.4): the corner losses of :class:`CornerPoolHead` with ``mask_ignored=True`` (``_focal_loss_mask``:
    the Gaussians of ``batch_gt_instances_ignore`` -- the sampler's small or cut objects -- zero both focal terms;
    N_pos counts every positive) and targets of ``train_cfg.assigner`` (default :data:`SACCADE_ASSIGNER`), plus
    ``loss_attention``: ``loss_attention`` (focal, alpha 2; binary targets, so every negative weighs 1) of every
    stack and scale against the targets of ``train_cfg.attention_assigner`` (default
    :class:`SaccadeAttentionAssigner`, built from the objects of both ``batch_gt_instances`` and
    ``batch_gt_instances_ignore``: the original marks every object of the crop), each normalised by the positives of
    its scale in the batch, summed over scales and stacks, then divided by the number of stacks once with
    ``stack_reduction='mean'`` and, with ``attention_stack_reduction='mean_twice'`` (the original's: ``att_loss +=
    _focal_loss(att, gt_att) / len(att)`` before the total is divided by the stacks again), a second time;
    ``'mean'`` divides once, as the other losses.

    Testing: :meth:`predict` decodes the last stack's corners in one pass (the decoder of ``test_cfg``); the saccade
    procedure (attention -> crops) is the detector's. :meth:`forward_attention` gives the attention maps.

    Args:
        num_classes (int): number of classes.
        num_stacks (int): stacks. Defaults to 3.
        attention_channels (Sequence[int]): channels of each stack's merge outputs, innermost first. Defaults to
            (384, 384, 256).
        attention_feat_channels (int): channels of the 3x3 conv of each attention branch. Defaults to 256.
        attention_bias (float): last bias of the attention branches. Defaults to -2.19.
        loss_attention (dict): attention loss on logits. Defaults to ``HeatmapFocalLoss`` (alpha 2, beta 4, clamp
            1e-4), the original's ``_focal_loss`` on binary targets.
        attention_stack_reduction (str): ``'mean_twice'`` (original) or ``'mean'``, see above. Defaults to
            ``'mean_twice'``.
        mask_ignored (bool): see :class:`CornerPoolHead`. Defaults to True (the original).
        train_cfg (dict, optional): ``assigner`` (corners, default :data:`SACCADE_ASSIGNER`) and
            ``attention_assigner`` (default :data:`SACCADE_ATTENTION_ASSIGNER`).
        test_cfg (dict, optional): as :class:`CornerPoolHead`.
        init_cfg (dict, optional): as :class:`CornerPoolHead`.
        **kwargs: the other arguments of :class:`CornerPoolHead` (``in_channels``, ``corner_pool``, losses, ...).

    Raises:
        ValueError: on a bad ``attention_stack_reduction``, an attention assigner with another number of maps than
            ``attention_channels``, or inputs of the wrong number (see :meth:`split_inputs`).
    """

    def __init__(self,
                 num_classes: int,
                 num_stacks: int = 3,
                 attention_channels: Sequence[int] = (384, 384, 256),
                 attention_feat_channels: int = 256,
                 attention_bias: float = -2.19,
                 loss_attention: ConfigType = dict(
                     type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
                 attention_stack_reduction: str = 'mean_twice',
                 mask_ignored: bool = True,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        if attention_stack_reduction not in ATTENTION_STACK_REDUCTIONS:
            raise ValueError(f'attention_stack_reduction must be one of {ATTENTION_STACK_REDUCTIONS}, got '
                             f'{attention_stack_reduction!r}')
        attention_channels = tuple(int(c) for c in attention_channels)
        if len(attention_channels) > len(ATTENTION_SCALES) or not attention_channels:
            raise ValueError(f'attention_channels needs 1 to {len(ATTENTION_SCALES)} values, got {attention_channels}')
        train_cfg = copy.deepcopy(dict(train_cfg or {}))
        train_cfg.setdefault('assigner', copy.deepcopy(SACCADE_ASSIGNER))
        super().__init__(num_classes, num_stacks=num_stacks, mask_ignored=mask_ignored, train_cfg=train_cfg,
                         test_cfg=test_cfg, init_cfg=init_cfg, **kwargs)
        self.attention_channels = attention_channels
        self.attention_scales = ATTENTION_SCALES[:len(attention_channels)]
        self.attention_bias = attention_bias
        self.attention_stack_reduction = attention_stack_reduction
        self.att_modules = nn.ModuleList([
            nn.ModuleList([
                nn.Sequential(
                    ConvModule(c, attention_feat_channels, 3, padding=1, bias=True, norm_cfg=None),
                    nn.Conv2d(attention_feat_channels, 1, 1)) for c in attention_channels
            ]) for _ in range(num_stacks)
        ])
        self.loss_attention = MODELS.build(loss_attention)
        self.attention_assigner = TASK_UTILS.build(
            copy.deepcopy(train_cfg.get('attention_assigner', SACCADE_ATTENTION_ASSIGNER)))
        if getattr(self.attention_assigner, 'num_maps', len(attention_channels)) != len(attention_channels):
            raise ValueError(f'train_cfg.attention_assigner draws {self.attention_assigner.num_maps} maps, the head '
                             f'has {len(attention_channels)} attention branches')

    def init_weights(self) -> None:
        """:class:`CornerPoolHead`'s init (PyTorch defaults, heatmap bias) and the attention bias."""
        super().init_weights()
        if self.init_cfg is not None:
            return
        for stack in self.att_modules:
            for branch in stack:
                nn.init.constant_(branch[-1].bias, self.attention_bias)

    def split_inputs(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], List[List[Tensor]]]:
        """Split the backbone's outputs into the stacks' features and their merge outputs.

        Args:
            x (Sequence[Tensor]): ``num_stacks`` features, then ``num_stacks * len(attention_channels)`` merges.

        Returns:
            tuple[list[Tensor], list[list[Tensor]]]: features (first stack first) and, per stack, its merges
            (innermost first).

        Raises:
            ValueError: naming ``bbox_head.num_stacks`` / ``attention_channels`` when the count does not fit.
        """
        num_scales = len(self.attention_channels)
        expected = self.num_stacks * (1 + num_scales)
        if len(x) != expected:
            raise ValueError(f'{type(self).__name__} with num_stacks={self.num_stacks} and {num_scales} '
                             f'attention_channels expects {expected} inputs (features, then merge outputs: '
                             f'Hourglass54 with with_merges=True), got {len(x)}')
        feats = list(x[:self.num_stacks])
        merges = [list(x[self.num_stacks + s * num_scales:self.num_stacks + (s + 1) * num_scales])
                  for s in range(self.num_stacks)]
        return feats, merges

    def forward_attention(self, merges: Sequence[Tensor], stack: int) -> Dict[str, Tensor]:
        """Attention logits of one stack.

        Args:
            merges (Sequence[Tensor]): that stack's merge outputs (B, attention_channels[i], h_i, w_i).
            stack (int): stack index (negative counts from the end).

        Returns:
            dict[str, Tensor]: scale name (:data:`ATTENTION_SCALES`) -> (B, 1, h_i, w_i) logits.
        """
        return {name: module(merge)
                for name, module, merge in zip(self.attention_scales, self.att_modules[stack], merges)}

    def forward(self, x: Sequence[Tensor]) -> KeypointMaps:
        """Corner and attention maps of every stack.

        Args:
            x (Sequence[Tensor]): see :meth:`split_inputs`.

        Returns:
            KeypointMaps: the corner groups of :class:`CornerPoolHead` and ``'attention'``.
        """
        feats, merges = self.split_inputs(x)
        per_stack = []
        for i, (feat, stack_merges) in enumerate(zip(feats, merges)):
            out = self.forward_single(feat, i)
            out['attention'] = self.forward_attention(stack_merges, i)
            per_stack.append(out)
        return KeypointMaps.from_stacks(per_stack)

    def loss_by_feat(self,
                     outputs: KeypointMaps,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Corner losses (:class:`CornerPoolHead`) and ``loss_attention``.

        Returns:
            dict[str, Tensor]: ``loss_heatmap``, ``loss_pull``, ``loss_push``, ``loss_offset``,
            ``loss_attention``.
        """
        losses = super().loss_by_feat(outputs, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)
        losses['loss_attention'] = self.loss_attention_by_feat(outputs, batch_gt_instances, batch_img_metas,
                                                               batch_gt_instances_ignore)
        return losses

    def get_attention_targets(self,
                              outputs: KeypointMaps,
                              batch_gt_instances: InstanceList,
                              batch_img_metas: List[dict],
                              batch_gt_instances_ignore: OptInstanceList = None) -> List[Tensor]:
        """Per attention scale, the (B, 1, h, w) binary target (objects and ignored objects alike)."""
        shapes = [outputs['attention'][name][-1].shape[-2:] for name in self.attention_scales]
        ignores = batch_gt_instances_ignore or [None] * len(batch_gt_instances)
        return self.attention_assigner.assign(list(zip(batch_gt_instances, ignores)), shapes, batch_img_metas)

    def loss_attention_by_feat(self,
                               outputs: KeypointMaps,
                               batch_gt_instances: InstanceList,
                               batch_img_metas: List[dict],
                               batch_gt_instances_ignore: OptInstanceList = None) -> Tensor:
        """The attention loss of every stack and scale, normalised as the class docstring says."""
        targets = self.get_attention_targets(outputs, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)
        num_stacks = outputs.num_stacks
        loss = 0
        for name, target in zip(self.attention_scales, targets):
            for logits in outputs['attention'][name]:
                loss = loss + self.loss_attention(logits, target.to(logits.dtype))
        scale = 1.0 / num_stacks if self.stack_reduction == 'mean' else 1.0
        if self.attention_stack_reduction == 'mean_twice':
            scale = scale / num_stacks
        return loss * scale

    def predict(self,
                x: Tuple[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = False,
                with_nms: bool = True) -> InstanceList:
        """One-pass detections of the last stack's corners (its attention branches are not run).

        Args: as :meth:`CornerPoolHead.predict`; ``x`` as :meth:`split_inputs`.

        Returns:
            list[InstanceData]: per image ``bboxes``, ``scores``, ``labels``.
        """
        feats, _ = self.split_inputs(x)
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        outputs = KeypointMaps.from_stacks([self.forward_single(feats[-1], -1)])
        return self.predict_by_feat(outputs, batch_img_metas=batch_img_metas, rescale=rescale, with_nms=with_nms)

    def predict_attention(self, x: Sequence[Tensor]) -> Dict[str, Tensor]:
        """The last stack's attention maps after the sigmoid (the original's ``_test``), scale -> (B, 1, h, w)."""
        _, merges = self.split_inputs(x)
        return {name: logits.sigmoid() for name, logits in self.forward_attention(merges[-1], -1).items()}


__all__ = ['SaccadeHead', 'SACCADE_ASSIGNER', 'SACCADE_ATTENTION_ASSIGNER', 'ATTENTION_SCALES']
