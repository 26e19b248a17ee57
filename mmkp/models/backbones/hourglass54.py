"""Hourglass-54: the backbone of CornerNet-Saccade (Law et al., CornerNet-Lite, 2019), with its merge outputs."""
from typing import List, Sequence, Tuple

import torch.nn.functional as F
from mmdet.models.backbones.hourglass import HourglassModule, HourglassNet
from mmdet.utils import ConfigType
from torch import Tensor, nn

from mmkp.registry import MODELS


class MergeHourglassModule(HourglassModule):
    """mmdet's ``HourglassModule`` that also returns the merge output of every level it contains.

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/modules.py::saccade_module``: the recursion of
    ``hg_module`` (DETECTORS.md 2.2; mmdet's ``HourglassModule`` builds the same layers under the same names:
    ``up1``, ``low1`` (first block stride 2, no max-pool), ``low2``, ``low3``), whose forward also hands back each
    level's ``up1 + upsample(low3)`` ("merge"), innermost first, for the attention branches.

    The layers are mmdet's; only the nesting differs: mmdet nests plain ``HourglassModule`` s (which return one
    tensor and build their BN layers with the default ``norm_cfg``), so ``low2`` is rebuilt here as a
    :class:`MergeHourglassModule` with this module's ``norm_cfg`` and ``upsample_cfg`` when ``depth > 1``.

    Args:
        depth (int): number of stride-2 levels of this module and the nested ones (>= 1).
        stage_channels (Sequence[int]): channels of this level and the following ones (``depth + 1`` values used).
        stage_blocks (Sequence[int]): residual blocks per branch of each level; the last value: the bottleneck.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)``.
        upsample_cfg (dict): ``F.interpolate`` arguments; without ``scale_factor`` the low branch is resized to the
            size of ``up1``. Defaults to ``dict(mode='nearest')`` (the original: nearest, factor 2; the same on
            even sizes).

    Shape:
        - Input: (B, stage_channels[0], H, W).
        - Output: ``(merge, merges)``: ``merge`` (B, stage_channels[0], H, W) and ``merges``, a list of ``depth``
          tensors, the innermost level first, ending with ``merge`` itself; level l (0 outermost) has
          stage_channels[l] channels at H / 2**l x W / 2**l.
    """

    def __init__(self,
                 depth: int,
                 stage_channels: Sequence[int],
                 stage_blocks: Sequence[int],
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 upsample_cfg: ConfigType = dict(mode='nearest')) -> None:
        # mmdet builds its own nested modules first; for depth > 1 they are replaced below (the cost is the
        # construction of those layers, not kept)
        super().__init__(1, list(stage_channels), list(stage_blocks), norm_cfg=norm_cfg,
                         upsample_cfg=upsample_cfg)
        self.depth = depth
        if depth > 1:
            self.low2 = MergeHourglassModule(depth - 1, stage_channels[1:], stage_blocks[1:], norm_cfg=norm_cfg,
                                             upsample_cfg=upsample_cfg)

    def forward(self, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """Skip branch plus up-sampled low branch, and the merges of every level (innermost first).

        Args:
            x (Tensor): (B, stage_channels[0], H, W).

        Returns:
            tuple[Tensor, list[Tensor]]: see the class docstring.
        """
        up1 = self.up1(x)
        low = self.low1(x)
        if self.depth > 1:
            low, merges = self.low2(low)
        else:
            low, merges = self.low2(low), []
        low = self.low3(low)
        if 'scale_factor' in self.upsample_cfg:
            up2 = F.interpolate(low, **self.upsample_cfg)
        else:
            up2 = F.interpolate(low, size=up1.shape[2:], **self.upsample_cfg)
        merge = up1 + up2
        return merge, merges + [merge]


@MODELS.register_module()
class Hourglass54(HourglassNet):
    """Hourglass-54 of CornerNet-Saccade: 3 stacked 3-level hourglasses; per stack the feature and the merge outputs.

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet_Saccade.py::model`` with
    ``core/models/py_utils/modules.py::saccade`` (DETECTORS.md 4.1): mmdet's ``HourglassNet`` (its stem = the
    CornerNet ``pre``: 7x7 stride-2 conv 3 -> 128 and a stride-2 residual 128 -> 256; its ``out_convs`` /
    ``conv1x1s`` / ``remap_convs`` / ``inters`` = the original's ``cnvs`` / ``inters_`` / ``cnvs_`` / ``inters``) whose
    hourglasses are :class:`MergeHourglassModule` s, ``downsample_times=3``, channels (256, 384, 384, 512), one
    residual block per branch and level (the bottleneck: one). The defaults are the released model:
    89,884,544 parameters (the 89.88 M of the spec). Module names are those of ``HourglassNet``, so the CornerNet
    key rules of :mod:`mmkp.converters.cornernet` map the released ``hg.*`` tensors unchanged.

    Initialisation: as ``HourglassNet`` (PyTorch's defaults for the convolutions, as the original; BN 1 / 0).

    Args:
        downsample_times (int): stride-2 levels of each hourglass. Defaults to 3.
        num_stacks (int): stacked hourglasses (>= 1). Defaults to 3.
        stage_channels (Sequence[int]): channels of the levels (``downsample_times + 1`` values). Defaults to
            (256, 384, 384, 512).
        stage_blocks (Sequence[int]): residual blocks per branch of each level (same length). Defaults to
            (1, 1, 1, 1).
        feat_channel (int): channels of each stack's feature. Defaults to 256.
        norm_cfg (dict): normalisation layers (also inside the hourglasses). Defaults to
            ``dict(type='BN', requires_grad=True)``.
        with_merges (bool): also return the merge outputs. Defaults to True (what :class:`SaccadeHead` reads);
            False returns the features alone, as ``HourglassNet`` (e.g. for a plain ``CornerPoolHead``).

    Raises:
        ValueError: when ``stage_channels`` / ``stage_blocks`` do not hold ``downsample_times + 1`` values.

    Shape:
        - Input: (B, 3, H, W), H and W such that H / 4 and W / 4 halve ``downsample_times`` times (255 -> 64).
        - Output: a tuple of ``num_stacks`` features (B, feat_channel, H / 4, W / 4), first stack first, followed,
          with ``with_merges``, by ``num_stacks * downsample_times`` merge outputs, stack by stack and in each stack
          the innermost level first: for a 255 x 255 input and the defaults, per stack (B, 384, 16, 16),
          (B, 384, 32, 32), (B, 256, 64, 64).

    Example:
        >>> import torch
        >>> model = Hourglass54(stage_channels=(16, 24, 24, 32), feat_channel=16).eval()
        >>> [tuple(t.shape[1:]) for t in model(torch.rand(1, 3, 255, 255))][:4]
        [(16, 64, 64), (16, 64, 64), (16, 64, 64), (24, 16, 16)]
    """

    def __init__(self,
                 downsample_times: int = 3,
                 num_stacks: int = 3,
                 stage_channels: Sequence[int] = (256, 384, 384, 512),
                 stage_blocks: Sequence[int] = (1, 1, 1, 1),
                 feat_channel: int = 256,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 with_merges: bool = True) -> None:
        stage_channels, stage_blocks = tuple(stage_channels), tuple(stage_blocks)
        if len(stage_channels) != downsample_times + 1 or len(stage_blocks) != downsample_times + 1:
            raise ValueError(f'stage_channels {stage_channels} and stage_blocks {stage_blocks} need '
                             f'downsample_times + 1 = {downsample_times + 1} values each')
        # HourglassNet's own hourglasses are built with depth 1 (cheap) and replaced: they neither return the
        # merges nor take norm_cfg
        super().__init__(
            downsample_times=1,
            num_stacks=num_stacks,
            stage_channels=stage_channels,
            stage_blocks=stage_blocks,
            feat_channel=feat_channel,
            norm_cfg=norm_cfg)
        self.downsample_times = downsample_times
        self.stage_channels = stage_channels
        self.feat_channel = feat_channel
        self.with_merges = bool(with_merges)
        self.hourglass_modules = nn.ModuleList([
            MergeHourglassModule(downsample_times, stage_channels, stage_blocks, norm_cfg=norm_cfg)
            for _ in range(num_stacks)
        ])

    @property
    def merge_channels(self) -> Tuple[int, ...]:
        """Channels of one stack's merge outputs, innermost first ((384, 384, 256) by default)."""
        return tuple(reversed(self.stage_channels[:self.downsample_times]))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Stem, then the stacked hourglasses (``HourglassNet.forward`` with the merges kept).

        Args:
            x (Tensor): images (B, 3, H, W).

        Returns:
            tuple[Tensor]: see the class docstring.
        """
        inter = self.stem(x)
        feats, merges = [], []
        for ind in range(self.num_stacks):
            hourglass, stack_merges = self.hourglass_modules[ind](inter)
            feat = self.out_convs[ind](hourglass)
            feats.append(feat)
            merges.extend(stack_merges)
            if ind < self.num_stacks - 1:
                inter = self.conv1x1s[ind](inter) + self.remap_convs[ind](feat)
                inter = self.inters[ind](self.relu(inter))
        return tuple(feats + merges) if self.with_merges else tuple(feats)
