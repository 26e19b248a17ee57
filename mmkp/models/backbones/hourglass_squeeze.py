"""Hourglass-Squeeze: the fire-module hourglass backbone of CornerNet-Squeeze (Law et al., CornerNet-Lite, 2019)."""
from typing import List, Sequence

from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.models.backbones.resnet import BasicBlock
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmkp.registry import MODELS
from ..layers.fire_module import FireModule


def residual_block(in_channels: int, out_channels: int, stride: int, norm_cfg: ConfigType) -> BasicBlock:
    """The CornerNet family's ``residual(in, out, stride)`` as mmdet's ``BasicBlock``.

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/utils.py::residual``: conv3x3(stride) -> BN
    -> ReLU -> conv3x3 -> BN, plus a conv1x1(stride)-BN projection (``downsample``; the original's ``skip``) when the
    stride or the channels change, then ReLU. No convolution has a bias.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): stride of the first 3x3 conv and of the projection.
        norm_cfg (dict): normalisation layers.

    Returns:
        BasicBlock: the block; (B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride)).
    """
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            build_norm_layer(norm_cfg, out_channels)[1])
    return BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample, norm_cfg=norm_cfg)


def _fire_layer(in_channels: int, out_channels: int, num_blocks: int, stride: int,
                norm_cfg: ConfigType) -> nn.Sequential:
    """``num_blocks`` fire modules; the first changes the channels and carries the stride (``make_layer`` /
    ``make_hg_layer`` of CornerNet-Lite ``core/models/CornerNet_Squeeze.py``)."""
    layers = [FireModule(in_channels, out_channels, stride=stride, norm_cfg=norm_cfg)]
    layers += [FireModule(out_channels, out_channels, norm_cfg=norm_cfg) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


def _fire_layer_revr(in_channels: int, out_channels: int, num_blocks: int, norm_cfg: ConfigType) -> nn.Sequential:
    """``num_blocks`` fire modules; the last changes the channels (``make_layer_revr`` of CornerNet-Squeeze)."""
    layers = [FireModule(in_channels, in_channels, norm_cfg=norm_cfg) for _ in range(num_blocks - 1)]
    layers.append(FireModule(in_channels, out_channels, norm_cfg=norm_cfg))
    return nn.Sequential(*layers)


class FireHourglassModule(BaseModule):
    """One recursive hourglass of fire modules with transposed-convolution up-sampling.

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/modules.py::hg_module`` as configured by
    ``core/models/CornerNet_Squeeze.py``::

        up1  = fires(cur -> cur) x blocks[0]                       # full-resolution branch
        low1 = fire(cur -> next, stride 2) + fires(next -> next) x (blocks[0] - 1)   # no max-pool
        low2 = FireHourglassModule(depth - 1, ...) if depth > 1 else fires(next -> next) x blocks[1]
        low3 = fires(next -> next) x (blocks[0] - 1) + fire(next -> cur)
        out  = up1 + ConvTranspose2d(cur, cur, 4, stride 2, padding 1)(low3)

    The transposed convolution always doubles the size; where a level's input has an odd size (the original then
    fails on the addition) its output is cropped to the size of ``up1``, which changes nothing for even sizes.

    Args:
        depth (int): number of stride-2 down-samplings in this and the nested modules (>= 1).
        stage_channels (Sequence[int]): channels of this level and the following ones (``depth + 1`` values used).
        stage_blocks (Sequence[int]): fire modules per branch of this level and the following ones; the last value
            is the number of fire modules of the bottleneck.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)``.
        init_cfg (dict, optional): mmengine init config. Defaults to None.

    Shape:
        - Input: (B, stage_channels[0], H, W).
        - Output: (B, stage_channels[0], H, W).
    """

    def __init__(self,
                 depth: int,
                 stage_channels: Sequence[int],
                 stage_blocks: Sequence[int],
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.depth = depth
        cur_channels, next_channels = stage_channels[0], stage_channels[1]
        cur_blocks, next_blocks = stage_blocks[0], stage_blocks[1]
        self.up1 = _fire_layer(cur_channels, cur_channels, cur_blocks, 1, norm_cfg)
        self.low1 = _fire_layer(cur_channels, next_channels, cur_blocks, 2, norm_cfg)
        if depth > 1:
            self.low2 = FireHourglassModule(depth - 1, stage_channels[1:], stage_blocks[1:], norm_cfg=norm_cfg)
        else:
            self.low2 = _fire_layer(next_channels, next_channels, next_blocks, 1, norm_cfg)
        self.low3 = _fire_layer_revr(next_channels, cur_channels, cur_blocks, norm_cfg)
        self.up2 = nn.ConvTranspose2d(cur_channels, cur_channels, kernel_size=4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Skip branch plus the up-sampled low-resolution branch.

        Args:
            x (Tensor): (B, stage_channels[0], H, W).

        Returns:
            Tensor: (B, stage_channels[0], H, W).
        """
        up1 = self.up1(x)
        up2 = self.up2(self.low3(self.low2(self.low1(x))))
        if up2.shape[-2:] != up1.shape[-2:]:
            up2 = up2[..., :up1.shape[-2], :up1.shape[-1]]
        return up1 + up2


@MODELS.register_module()
class HourglassSqueezeNet(BaseModule):
    """Hourglass-Squeeze backbone of CornerNet-Squeeze: stacked hourglasses of fire modules, output stride 8.

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet_Squeeze.py::model`` with
    ``core/models/py_utils/modules.py::hg``:

    * stem (stride 8): ConvModule 7x7 stride 2 (3 -> ``stage_channels[0] // 2``, BN, ReLU), then two residual blocks
      (:func:`residual_block`, mmdet ``BasicBlock``) with stride 2, to ``stage_channels[0]``;
    * ``num_stacks`` :class:`FireHourglassModule` (``downsample_times`` levels), each followed by an ``out_convs``
      ConvModule 3x3 (-> ``feat_channel``, BN, ReLU) whose output is that stack's feature;
    * between stacks: ``inter = inters[i](ReLU(conv1x1s[i](inter) + remap_convs[i](feature_i)))``, both 1x1 convs
      without bias with BN and no activation; ``inter`` is the *input* of the hourglass just run, not its output.

    The defaults are the released model: ``num_stacks=2``, channels (256, 256, 384, 384, 512), fire modules
    (2, 2, 2, 2, 4), 24,728,448 parameters. Attribute names (``stem``, ``hourglass_modules``, ``out_convs``,
    ``conv1x1s``, ``remap_convs``, ``inters``) are those of mmdet's ``HourglassNet``, whose heads therefore work on it
    unchanged; ``tools/model_converters/cornernet_squeeze_to_mmkp.py`` maps the original checkpoint onto it.

    Initialisation: PyTorch's defaults for every convolution (as the original, which sets none) and BN weight 1 /
    bias 0, unless ``init_cfg`` is given.

    Args:
        downsample_times (int): stride-2 down-samplings inside each hourglass. Defaults to 4.
        num_stacks (int): number of stacked hourglasses (>= 1). Defaults to 2.
        stage_channels (Sequence[int]): channels of the hourglass levels, ``downsample_times + 1`` values; the first
            is also the stem's output and the inter-stack width. Every value must be even (fire modules). Defaults
            to (256, 256, 384, 384, 512).
        stage_blocks (Sequence[int]): fire modules per branch at each level (the last: the bottleneck), same length
            as ``stage_channels``, each >= 1. Defaults to (2, 2, 2, 2, 4).
        feat_channel (int): channels of each stack's output feature. Defaults to 256.
        norm_cfg (dict): normalisation layers everywhere. Defaults to ``dict(type='BN', requires_grad=True)``.
        init_cfg (dict, optional): mmengine init config (e.g. ``Pretrained``). Defaults to None.

    Raises:
        ValueError: if ``stage_channels`` and ``stage_blocks`` differ in length or do not have
            ``downsample_times + 1`` values, or a count (stacks, levels, blocks, channels) is not positive, or a
            channel count does not suit a fire module (odd).

    Shape:
        - Input: (B, 3, H, W).
        - Output: list of ``num_stacks`` tensors (B, ``feat_channel``, ceil(H / 8), ceil(W / 8)); a 511 x 511 image
          gives 64 x 64 maps. Each hourglass halves its input ``downsample_times`` times: where ceil(H / 8) and
          ceil(W / 8) are divisible by 2 ** ``downsample_times`` (16 by default; 511 -> 64) nothing is cropped, and
          the result is what the original computes (which fails on other sizes).

    Example:
        >>> import torch
        >>> from mmkp.models.backbones import HourglassSqueezeNet
        >>> model = HourglassSqueezeNet(stage_channels=(16, 16, 24, 24, 32), stage_blocks=(1, 1, 1, 1, 2),
        ...                             feat_channel=16).eval()
        >>> [tuple(f.shape) for f in model(torch.rand(1, 3, 511, 511))]
        [(1, 16, 64, 64), (1, 16, 64, 64)]
    """

    def __init__(self,
                 downsample_times: int = 4,
                 num_stacks: int = 2,
                 stage_channels: Sequence[int] = (256, 256, 384, 384, 512),
                 stage_blocks: Sequence[int] = (2, 2, 2, 2, 4),
                 feat_channel: int = 256,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        stage_channels, stage_blocks = list(stage_channels), list(stage_blocks)
        if downsample_times < 1:
            raise ValueError(f'downsample_times must be >= 1, got {downsample_times}')
        if num_stacks < 1:
            raise ValueError(f'num_stacks must be >= 1, got {num_stacks}')
        if len(stage_channels) != len(stage_blocks):
            raise ValueError(f'stage_channels ({len(stage_channels)} values) and stage_blocks ({len(stage_blocks)} '
                             'values) must have the same length')
        if len(stage_channels) != downsample_times + 1:
            raise ValueError(f'stage_channels and stage_blocks need downsample_times + 1 = {downsample_times + 1} '
                             f'values, got {len(stage_channels)}')
        if min(stage_blocks) < 1:
            raise ValueError(f'every stage needs at least one fire module, got stage_blocks={stage_blocks}')
        if min(stage_channels) < 2 or any(c % 2 for c in stage_channels):
            raise ValueError(f'stage_channels must be positive and even (fire modules), got {stage_channels}')
        if feat_channel < 1:
            raise ValueError(f'feat_channel must be >= 1, got {feat_channel}')
        self.downsample_times = downsample_times
        self.num_stacks = num_stacks
        self.stage_channels = tuple(stage_channels)
        self.stage_blocks = tuple(stage_blocks)
        self.feat_channel = feat_channel

        channels = stage_channels[0]
        self.stem = nn.Sequential(
            ConvModule(3, channels // 2, 7, stride=2, padding=3, norm_cfg=norm_cfg),
            residual_block(channels // 2, channels, 2, norm_cfg),
            residual_block(channels, channels, 2, norm_cfg))
        self.hourglass_modules = nn.ModuleList([
            FireHourglassModule(downsample_times, stage_channels, stage_blocks, norm_cfg=norm_cfg)
            for _ in range(num_stacks)
        ])
        self.out_convs = nn.ModuleList([
            ConvModule(channels, feat_channel, 3, padding=1, norm_cfg=norm_cfg) for _ in range(num_stacks)
        ])
        self.conv1x1s = nn.ModuleList([
            ConvModule(channels, channels, 1, norm_cfg=norm_cfg, act_cfg=None) for _ in range(num_stacks - 1)
        ])
        self.remap_convs = nn.ModuleList([
            ConvModule(feat_channel, channels, 1, norm_cfg=norm_cfg, act_cfg=None) for _ in range(num_stacks - 1)
        ])
        self.inters = nn.ModuleList([residual_block(channels, channels, 1, norm_cfg) for _ in range(num_stacks - 1)])
        self.relu = nn.ReLU(inplace=True)

    def init_weights(self) -> None:
        """PyTorch's default init for every (transposed) convolution, BN 1 / 0; ``init_cfg`` when given.

        ``ConvModule`` re-initialises its convolution with Kaiming-normal in mmengine's ``init_weights``; the
        original uses PyTorch's defaults, which this restores (as mmdet's ``HourglassNet`` does).
        """
        super().init_weights()
        if self.init_cfg is not None:
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.reset_parameters()

    def forward(self, x: Tensor) -> List[Tensor]:
        """Stem, then the stacked hourglasses.

        Args:
            x (Tensor): images (B, 3, H, W).

        Returns:
            list[Tensor]: one feature (B, feat_channel, ceil(H / 8), ceil(W / 8)) per stack, first to last.
        """
        inter = self.stem(x)
        feats = []
        for ind in range(self.num_stacks):
            feat = self.out_convs[ind](self.hourglass_modules[ind](inter))
            feats.append(feat)
            if ind < self.num_stacks - 1:
                inter = self.conv1x1s[ind](inter) + self.remap_convs[ind](feat)
                inter = self.inters[ind](self.relu(inter))
        return feats

