"""Stacked Hourglass with exactly ``num_stacks - 1`` inter-stack residuals (CenterNet-52's single stack)."""
from mmdet.models.backbones.hourglass import HourglassNet
from torch import nn

from mmkp.registry import MODELS


@MODELS.register_module()
class StackedHourglassNet(HourglassNet):
    """mmdet's ``HourglassNet`` without the inter-stack residual that one stack never runs.

    mmdet 3.3's ``HourglassNet`` builds ``inters`` with ``ResLayer(..., num_stacks - 1)``, and ``ResLayer`` always
    builds its first block: a single-stack network (CenterNet-52, Duankaiwen/CenterNet@3ad3a10
    ``models/CenterNet-52.py``, whose ``kp`` builds ``inters`` for ``nstack - 1`` stacks, none for one) carries a
    BasicBlock of 1,180,672 parameters (12 tensors at the default 256 channels) that ``forward`` never reaches. It
    breaks ``strict=True`` loading of the released ``CenterNet-52_480000.pkl`` and makes DDP fail on parameters
    without gradients unless ``find_unused_parameters=True``. This class drops it for one stack; with two or more
    stacks it is ``HourglassNet`` unchanged (same layers, names and forward).

    Args:
        **kwargs: the arguments of mmdet's ``HourglassNet`` (``downsample_times`` 5, ``num_stacks`` 2,
            ``stage_channels`` (256, 256, 384, 384, 384, 512), ``stage_blocks`` (2, 2, 2, 2, 2, 4),
            ``feat_channel`` 256 by default: Hourglass-104).

    Shape:
        (B, 3, H, W) -> a list of ``num_stacks`` tensors (B, feat_channel, H / 4, W / 4), as ``HourglassNet``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.num_stacks == 1:
            self.inters = nn.Sequential()
