"""Fire module of CornerNet-Squeeze (Law et al., CornerNet-Lite, 2019)."""
import torch
from mmcv.cnn import build_norm_layer
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmkp.registry import MODELS


@MODELS.register_module()
class FireModule(BaseModule):
    """SqueezeNet-style fire module with a depth-wise 3x3 expand branch, as in CornerNet-Squeeze.

    Follows princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet_Squeeze.py::fire_module``::

        s = norm1(conv1(x))                               # squeeze 1x1, in -> out / squeeze_ratio, no ReLU
        y = norm2(cat[conv_1x1(s), conv_3x3(s)])          # expand: 1x1 and depth-wise 3x3, out / 2 each
        out = ReLU(y + x) if stride == 1 and in == out else ReLU(y)

    Both expand convolutions carry the stride; the 3x3 one has ``groups = out / squeeze_ratio`` (depth-wise for the
    default ratio 2). No convolution has a bias. There is no projection skip: when the stride or the channels change
    the module has no residual path at all.

    Submodule names (``conv1``, ``bn1``, ``conv_1x1``, ``conv_3x3``, ``bn2`` for BN) are the original's, so
    checkpoints of the original map onto it by prefix.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels; must be even.
        squeeze_ratio (int): the squeeze conv outputs ``out_channels // squeeze_ratio`` channels (the original's
            ``sr``). ``out_channels`` must be divisible by it and ``out_channels // 2`` by the squeezed channels (the
            3x3 convolution is grouped by the squeezed channels). Defaults to 2.
        stride (int): stride of both expand convolutions. Defaults to 1.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)``.
        init_cfg (dict, optional): mmengine init config. Defaults to None (PyTorch's default init, as the original).

    Raises:
        ValueError: if a channel count or the stride is not positive, ``out_channels`` is odd, or the channel counts
            do not fit ``squeeze_ratio`` as described above.

    Shape:
        - Input: (B, in_channels, H, W).
        - Output: (B, out_channels, H', W') with H' = (H - 1) // stride + 1 (same for W).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 squeeze_ratio: int = 2,
                 stride: int = 1,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f'channels must be positive, got in_channels={in_channels}, '
                             f'out_channels={out_channels}')
        if stride < 1:
            raise ValueError(f'stride must be >= 1, got {stride}')
        if squeeze_ratio < 1 or out_channels % 2 or out_channels % squeeze_ratio:
            raise ValueError(f'out_channels ({out_channels}) must be even and divisible by squeeze_ratio '
                             f'({squeeze_ratio})')
        squeeze_channels = out_channels // squeeze_ratio
        expand_channels = out_channels // 2
        if expand_channels % squeeze_channels:
            raise ValueError(f'the 3x3 expand conv is grouped by the squeezed channels ({squeeze_channels}), which '
                             f'must divide out_channels // 2 ({expand_channels}); got squeeze_ratio={squeeze_ratio}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, squeeze_channels, 1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, squeeze_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv_1x1 = nn.Conv2d(squeeze_channels, expand_channels, 1, stride=stride, bias=False)
        self.conv_3x3 = nn.Conv2d(
            squeeze_channels, expand_channels, 3, stride=stride, padding=1, groups=squeeze_channels, bias=False)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, out_channels, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.with_skip = stride == 1 and in_channels == out_channels
        self.relu = nn.ReLU(inplace=True)

    @property
    def norm1(self) -> nn.Module:
        """The normalisation layer after the squeeze convolution."""
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        """The normalisation layer over the concatenated expand outputs."""
        return getattr(self, self.norm2_name)

    def forward(self, x: Tensor) -> Tensor:
        """Squeeze, expand, normalise, add the input when the shape is kept, ReLU.

        Args:
            x (Tensor): (B, in_channels, H, W).

        Returns:
            Tensor: (B, out_channels, H', W'), H' = (H - 1) // stride + 1.
        """
        squeezed = self.norm1(self.conv1(x))
        out = self.norm2(torch.cat((self.conv_1x1(squeezed), self.conv_3x3(squeezed)), dim=1))
        if self.with_skip:
            out = out + x
        return self.relu(out)
