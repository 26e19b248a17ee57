"""CenterNet (objects as points) head: center heatmap, box size and sub-cell offset."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.utils import ConfigType, InstanceList, OptConfigType, OptInstanceList, OptMultiConfig
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmkp.registry import MODELS, TASK_UTILS
from ..utils.heatmap import gather_feat
from ..utils.soft_nms_merge import batched_nms_any_dtype
from .keypoint_head import KeypointHeadMixin

#: Targets of xingyizhou/CenterNet (``datasets/sample/ctdet.py``): original radius formula, IoU 0.7, sigma = d / 6,
#: boxes clipped to the output map.
DEFAULT_ASSIGNER = dict(
    type='GaussianHeatmapAssigner',
    keypoints=('center', ),
    radius_formula='original',
    min_overlap=0.7,
    sigma_factor=6.0,
    clip_to='output')
DEFAULT_DECODER = dict(type='CenterHeatmapDecoder', topk=100, local_maximum_kernel=3)
#: mmdet ``CenterNetHead`` ``test_cfg`` keys and the decoder arguments they set.
MMDET_TEST_KEYS = dict(topk='topk', local_maximum_kernel='local_maximum_kernel')


def _prediction_branch(in_channels: int, feat_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 (bias) -> ReLU -> conv1x1 (bias), the originals' ``head_conv`` branch."""
    return nn.Sequential(
        nn.Conv2d(in_channels, feat_channels, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(feat_channels, out_channels, 1))


@MODELS.register_module()
class CenterHeatmapHead(KeypointHeadMixin, BaseDenseHead):
    """Objects as Points (Zhou et al., 2019): a center heatmap per class, box size and center offset.

    Layout and initialisation follow xingyizhou/CenterNet ``src/lib/models/networks/msra_resnet.py`` and
    ``large_hourglass.py``: each output is conv3x3(``in_channels`` -> ``feat_channels``, bias) -> ReLU ->
    conv1x1; the heatmap's last bias is -2.19 (prior about 0.1); the size and offset last convs are normal(std
    ``reg_init_std``) with bias 0. With ``num_stacks`` > 1 (Hourglass) every stack has its own branches, losses
    are averaged over stacks (intermediate supervision) and only the last stack is decoded.

    Targets come from ``train_cfg.assigner`` (default: the original's, :data:`DEFAULT_ASSIGNER`); decoding from
    ``test_cfg.decoder`` (default :data:`DEFAULT_DECODER`; mmdet's ``topk`` / ``local_maximum_kernel`` keys of
    ``test_cfg`` are honoured too). Unlike mmdet's ``CenterNetHead`` the maps stay logits in ``forward`` and
    decoding needs no ``border`` meta, so plain ``Resize`` + ``Pad`` test pipelines work (mmdet issue #6395).

    Args:
        num_classes (int): number of classes.
        in_channels (int): channels of the input feature(s).
        feat_channels (int): channels of the 3x3 conv of each branch. 64 for ResNet, 256 for DLA-34 and Hourglass.
            Defaults to 64.
        num_stacks (int): number of input features (hourglass stacks), each with its own branches. Defaults to 1.
        heatmap_bias (float): last bias of the heatmap branch. Defaults to -2.19.
        reg_init_std (float, optional): std of the normal init of the size / offset last convs (bias 0); None keeps
            PyTorch's default weights with bias 0 (DLA-34). Defaults to 0.001.
        loss_heatmap (dict): heatmap loss on logits. Defaults to ``HeatmapFocalLoss`` (alpha 2, beta 4).
        loss_size (dict): size loss, normalised by 2 x #objects as the original ``RegL1Loss``. Defaults to
            ``L1Loss`` with weight 0.1.
        loss_offset (dict): offset loss, same normalisation. Defaults to ``L1Loss`` with weight 1.
        train_cfg (dict, optional): ``assigner``.
        test_cfg (dict, optional): ``decoder``, ``max_per_img`` (100), ``score_thr`` (none), ``nms`` (None: no
            NMS, as the original at a single scale; a dict such as ``dict(type='soft_nms', iou_threshold=0.5,
            sigma=0.5, method='gaussian')`` runs mmcv's ``batched_nms``).
        init_cfg (dict, optional): mmengine init config. Defaults to None (the init above).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 64,
                 num_stacks: int = 1,
                 heatmap_bias: float = -2.19,
                 reg_init_std: Optional[float] = 0.001,
                 loss_heatmap: ConfigType = dict(type='HeatmapFocalLoss', loss_weight=1.0),
                 loss_size: ConfigType = dict(type='L1Loss', loss_weight=0.1),
                 loss_offset: ConfigType = dict(type='L1Loss', loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_stacks < 1:
            raise ValueError(f'num_stacks must be >= 1, got {num_stacks}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.num_stacks = num_stacks
        self.heatmap_bias = heatmap_bias
        self.reg_init_std = reg_init_std
        self.heatmap_branches = nn.ModuleList(
            [_prediction_branch(in_channels, feat_channels, num_classes) for _ in range(num_stacks)])
        self.size_branches = nn.ModuleList(
            [_prediction_branch(in_channels, feat_channels, 2) for _ in range(num_stacks)])
        self.offset_branches = nn.ModuleList(
            [_prediction_branch(in_channels, feat_channels, 2) for _ in range(num_stacks)])
        self.loss_heatmap = MODELS.build(loss_heatmap)
        self.loss_size = MODELS.build(loss_size)
        self.loss_offset = MODELS.build(loss_offset)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.assigner = TASK_UTILS.build((train_cfg or {}).get('assigner', DEFAULT_ASSIGNER))
        self.decoder = self.build_decoder(test_cfg, DEFAULT_DECODER, MMDET_TEST_KEYS)

    def init_weights(self) -> None:
        """Heatmap bias ``heatmap_bias``; size / offset last conv normal(``reg_init_std``), bias 0."""
        super().init_weights()
        if self.init_cfg is not None:
            return
        for branch in self.heatmap_branches:
            nn.init.constant_(branch[-1].bias, self.heatmap_bias)
        for branch in list(self.size_branches) + list(self.offset_branches):
            for m in branch.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.constant_(m.bias, 0)
            if self.reg_init_std is not None:
                nn.init.normal_(branch[-1].weight, std=self.reg_init_std)

    def forward(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Raw maps of every stack.

        Args:
            x (Sequence[Tensor]): ``num_stacks`` features (B, in_channels, H, W) (a neck's 1-tuple for ResNet).

        Returns:
            tuple[list[Tensor], list[Tensor], list[Tensor]]: per stack, heatmap logits (B, num_classes, H, W), box
            size (B, 2, H, W) as (w, h) in feature cells, offset (B, 2, H, W) as (dx, dy) in feature cells.

        Raises:
            ValueError: when the number of features differs from ``num_stacks``.
        """
        self._check_stacks(x)
        heatmaps = [branch(feat) for branch, feat in zip(self.heatmap_branches, x)]
        sizes = [branch(feat) for branch, feat in zip(self.size_branches, x)]
        offsets = [branch(feat) for branch, feat in zip(self.offset_branches, x)]
        return heatmaps, sizes, offsets

    def loss_by_feat(self,
                     heatmaps: List[Tensor],
                     sizes: List[Tensor],
                     offsets: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Focal loss on the heatmap, L1 on size and offset at object centers, averaged over stacks.

        Args:
            heatmaps, sizes, offsets (list[Tensor]): outputs of :meth:`forward`.
            batch_gt_instances (list[InstanceData]): ``bboxes`` in input pixels and ``labels``.
            batch_img_metas (list[dict]): metas with ``batch_input_shape`` and ``img_shape``.
            batch_gt_instances_ignore: unused (the original has no ignore regions).

        Returns:
            dict[str, Tensor]: ``loss_heatmap``, ``loss_size``, ``loss_offset``.
        """
        feat_shape = heatmaps[-1].shape[-2:]
        input_shape = batch_img_metas[0]['batch_input_shape']
        targets = self.assigner.assign(batch_gt_instances, feat_shape, input_shape, self.num_classes,
                                       batch_img_metas)
        heat_target = targets.heatmap_for(self.loss_heatmap, 'center')
        index = targets.indices['center']
        weight = targets.mask.unsqueeze(-1).expand(-1, -1, 2).float()
        avg_factor = weight.sum() + 1e-4
        loss_heat, loss_size, loss_off = 0, 0, 0
        for heat, size, off in zip(heatmaps, sizes, offsets):
            loss_heat = loss_heat + self.loss_heatmap(heat, heat_target)
            loss_size = loss_size + self.loss_size(
                gather_feat(size, index), targets.sizes, weight=weight, avg_factor=avg_factor)
            loss_off = loss_off + self.loss_offset(
                gather_feat(off, index), targets.offsets['center'], weight=weight, avg_factor=avg_factor)
        n = len(heatmaps)
        return dict(loss_heatmap=loss_heat / n, loss_size=loss_size / n, loss_offset=loss_off / n)

    def predict_by_feat(self,
                        heatmaps: List[Tensor],
                        sizes: List[Tensor],
                        offsets: List[Tensor],
                        batch_img_metas: Optional[List[dict]] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Decode the last stack into boxes.

        Args:
            heatmaps, sizes, offsets (list[Tensor]): outputs of :meth:`forward`.
            batch_img_metas (list[dict]): metas of the batch.
            rescale (bool): map to original-image pixels (else resized-image pixels). Defaults to False (mmdet's
                default; ``predict`` passes the detector's ``rescale``).
            with_nms (bool): apply ``test_cfg.nms`` when it is set. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes`` (K, 4), ``scores`` (K,), ``labels`` (K,).
        """
        results = self.decoder.decode(heatmaps[-1], sizes[-1], offsets[-1], batch_img_metas, rescale=rescale)
        cfg = self.test_cfg or ConfigDict()
        return [self._post_process(r, cfg, with_nms) for r in results]

    def decode_scores(self,
                      heat_scores: Tensor,
                      size: Tensor,
                      offset: Tensor,
                      batch_img_metas: List[dict],
                      rescale: bool = True) -> InstanceList:
        """Decode maps whose heatmap is already a score (after sigmoid), e.g. a flip-averaged one; no NMS.

        The decoder takes logits, so the scores go through ``logit`` (clamped to [1e-12, 1 - 1e-7]); its sigmoid
        gives them back (monotonic, so the peaks and their order are those of the scores).

        Args:
            heat_scores (Tensor): (B, num_classes, H, W) scores in [0, 1].
            size (Tensor): (B, 2, H, W) (w, h) in feature cells.
            offset (Tensor): (B, 2, H, W) (dx, dy) in feature cells.
            batch_img_metas (list[dict]): B metas.
            rescale (bool): original-image pixels (True) or resized-image pixels. Defaults to True.

        Returns:
            list[InstanceData]: per image ``bboxes`` (K, 4), ``scores`` (K,), ``labels`` (K,), K = decoder topk.
        """
        logits = torch.logit(heat_scores.clamp(1e-12, 1 - 1e-7))
        return self.decoder.decode(logits, size, offset, batch_img_metas, rescale=rescale)

    def nms_detections(self, results: InstanceData, nms_cfg: Optional[dict], max_per_img: int = 100) -> InstanceData:
        """NMS (``nms_cfg``, None: none) then the top ``max_per_img`` of pooled detections (test-time augmentation).

        Args:
            results (InstanceData): ``bboxes`` (N, 4), ``scores`` (N,), ``labels`` (N,).
            nms_cfg (dict, optional): mmcv ``batched_nms`` config.
            max_per_img (int): detections kept. Defaults to 100.

        Returns:
            InstanceData: at most ``max_per_img`` detections.
        """
        return self._post_process(results, ConfigDict(nms=nms_cfg, max_per_img=max_per_img), True)

    @staticmethod
    def _post_process(results: InstanceData, cfg: ConfigDict, with_nms: bool) -> InstanceData:
        """Optional score threshold and NMS, then the top ``max_per_img``."""
        score_thr = cfg.get('score_thr', None)
        if score_thr is not None:
            results = results[results.scores > score_thr]
        nms_cfg = cfg.get('nms', None)
        if with_nms and nms_cfg is not None and len(results) > 0:
            scores, keep = batched_nms_any_dtype(results.bboxes, results.scores, results.labels, nms_cfg)
            results = results[keep]
            results.scores = scores
        max_per_img = cfg.get('max_per_img', 100)
        if len(results) > max_per_img:
            order = torch.argsort(results.scores, descending=True)[:max_per_img]
            results = results[order]
        return results
