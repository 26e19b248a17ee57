"""The DLA up-sampling neck of CenterNet (Objects as Points): DLAUp + IDAUp on deformable convolutions.

Written after xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py`` (``fill_up_weights``,
``DeformConv``, ``IDAUp``, ``DLAUp`` and the ``dla_up`` / ``ida_up`` part of ``DLASeg``), whose ``DCN`` is
``src/lib/models/networks/DCNv2/dcn_v2.py::DCN`` (modulated deformable convolution, DCNv2).

Deformable convolution
    The original's ``DCN(c_in, c_out, 3x3, stride 1, padding 1, deformable_groups=1)`` is mmcv's
    ``mmcv.ops.ModulatedDeformConv2dPack`` with the same arguments: both predict 27 channels with a 3x3 conv from the
    input (zero-initialised weight and bias), split them in three, use the first two thirds as the (dy, dx) offsets of
    the 9 sampling points and ``sigmoid`` of the last third as their modulation masks, and both own the convolution's
    ``weight`` [c_out, c_in, 3, 3] and ``bias`` [c_out] (initialised uniform(+-1 / sqrt(9 c_in)) and 0). The only
    naming difference is the offset branch: the original's ``conv_offset_mask`` is mmcv's ``conv_offset``. The
    bias before the BN is kept as the original has it, so a converted checkpoint needs no folding. Because the
    mask of a zero offset branch is sigmoid(0) = 0.5, a freshly built DCN computes ``0.5 * conv(x, weight) + bias``.

Checkpoint keys
    :data:`ORIGINAL_KEY_RULES` maps the ``dla_up.*`` / ``ida_up.*`` keys of the released ``ctdet_coco_dla_2x.pth``
    onto an mmdet detector whose neck is :class:`DLANeck` (``use_dcn=True``); the rules follow
    :mod:`mmkp.converters.core` (ordered ``(regex, replacement)`` pairs, first match wins, ``None`` drops).
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import build_norm_layer
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmkp.registry import MODELS

#: where the model comes from (docstrings, converter metadata).
DLA_NECK_ORIGINAL = 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/pose_dla_dcn.py'

#: released CenterNet DLA-34 neck keys -> detector keys (``neck.*``, ``use_dcn=True``), first match wins:
#:
#: 1. ``{dla_up,ida_up}.<path>.conv.conv_offset_mask.{weight,bias}`` -> ``neck.{dla_up,ida_up}.<path>.conv.conv_offset.
#:    {weight,bias}`` (DCNv2's offset/mask branch under mmcv's name; same shapes [27, c_in, 3, 3] / [27], same channel
#:    order);
#: 2. ``dla_up.<rest>`` -> ``neck.dla_up.<rest>`` (``ida_{0,1,2}.{proj,up,node}_{k}``, ``...conv.{weight,bias}``,
#:    ``...actf.0.*`` the BN);
#: 3. ``ida_up.<rest>`` -> ``neck.ida_up.<rest>``.
#:
#: With ``use_dcn=False`` rule 1 has no target (a plain conv has no offset branch); a converter must then drop those
#: keys, and the learnt offsets are lost (the result is not the released model).
ORIGINAL_KEY_RULES: List[Tuple[str, Optional[str]]] = [
    (r'^(dla_up|ida_up)\.(.+)\.conv_offset_mask\.', r'neck.\1.\2.conv_offset.'),
    (r'^dla_up\.', 'neck.dla_up.'),
    (r'^ida_up\.', 'neck.ida_up.'),
]


def bilinear_kernel(kernel_size: int) -> Tensor:
    """The 2-D bilinear up-sampling kernel of the original's ``fill_up_weights``.

    With ``f = ceil(k / 2)`` and ``c = (2 f - 1 - f % 2) / (2 f)``, ``w[i, j] = (1 - |i / f - c|) (1 - |j / f - c|)``
    (k = 4: outer product of (0.25, 0.75, 0.75, 0.25)).

    Args:
        kernel_size (int): k (>= 1).

    Returns:
        Tensor: (k, k), float32.
    """
    f = math.ceil(kernel_size / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    line = torch.tensor([1 - abs(i / f - c) for i in range(kernel_size)], dtype=torch.float32)
    return line[:, None] * line[None, :]


def fill_up_weights(up: nn.ConvTranspose2d) -> None:
    """Set every channel of a depth-wise transposed convolution to :func:`bilinear_kernel` (in place).

    ``fill_up_weights`` of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py``.

    Args:
        up (nn.ConvTranspose2d): weight (C, 1, k, k), square kernel.

    Raises:
        ValueError: the kernel is not square or the convolution not depth-wise (weight.shape[1] != 1).
    """
    weight = up.weight
    if weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f'fill_up_weights needs a depth-wise square kernel (C, 1, k, k), got {tuple(weight.shape)}')
    with torch.no_grad():
        weight.copy_(bilinear_kernel(weight.shape[2]).to(weight).expand_as(weight))


def _build_conv(in_channels: int, out_channels: int, use_dcn: bool) -> nn.Module:
    if not use_dcn:
        conv = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=True)
        nn.init.zeros_(conv.bias)  # as DCNv2 (PyTorch's default would be uniform)
        return conv
    try:
        from mmcv.ops import ModulatedDeformConv2dPack
    except ImportError as e:  # mmcv without compiled ops (mmcv-lite, or an isolated build)
        raise ImportError('DLANeck(use_dcn=True) needs mmcv.ops.ModulatedDeformConv2dPack (a full mmcv build with '
                          f'ops); build the neck with use_dcn=False to use plain 3x3 convolutions ({e})') from e
    return ModulatedDeformConv2dPack(in_channels, out_channels, 3, stride=1, padding=1, dilation=1, deform_groups=1,
                                     bias=True)


class DLAConvBlock(nn.Module):
    """3x3 modulated deformable conv (with bias) -> BN -> ReLU: the original's ``DeformConv``.

    ``DeformConv`` of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py``; names ``conv`` and
    ``actf`` (``Sequential(BN, ReLU)``) as there.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        use_dcn (bool): ``mmcv.ops.ModulatedDeformConv2dPack`` (True) or a plain ``nn.Conv2d`` 3x3 with bias (False).
            Defaults to True.
        norm_cfg (dict): normalisation layer. Defaults to ``dict(type='BN')`` (momentum 0.1 as the original).

    Raises:
        ImportError: ``use_dcn=True`` and mmcv has no compiled ops.

    Shape:
        - Input: (B, in_channels, H, W).
        - Output: (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, use_dcn: bool = True,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        self.actf = nn.Sequential(build_norm_layer(norm_cfg, out_channels)[1], nn.ReLU(inplace=True))
        self.conv = _build_conv(in_channels, out_channels, use_dcn)

    def forward(self, x: Tensor) -> Tensor:
        """See the class docstring for shapes."""
        return self.actf(self.conv(x))


class IDAUp(nn.Module):
    """Iterative deep aggregation: fold levels into their finer neighbour, one after another.

    ``IDAUp(o, channels, up_f)`` of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py``. For
    each k = 1 .. len(in_channels) - 1: ``proj_k`` (:class:`DLAConvBlock`, in_channels[k] -> out_channels),
    ``up_k`` (depth-wise ``ConvTranspose2d(out, out, 2 f, stride f, padding f // 2, groups=out, bias=False)`` with
    f = up_factors[k], bilinear weights from :func:`fill_up_weights`, trained afterwards) and ``node_k``
    (:class:`DLAConvBlock`, out -> out). ``forward`` rewrites a list of features in place:
    ``layers[i] = node_k(up_k(proj_k(layers[i])) + layers[i - 1])`` for i = start + 1 .. end - 1, k = i - start, so
    each level aggregates the already aggregated previous one.

    Args:
        out_channels (int): channels of every output (and of ``layers[start]``).
        in_channels (Sequence[int]): channels of ``layers[start:end]``; the first is not projected.
        up_factors (Sequence[int]): up-sampling factor of each of those levels to the resolution of
            ``layers[start]``; the first is not used, the others must be >= 2.
        use_dcn (bool): see :class:`DLAConvBlock`. Defaults to True.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN')``.

    Raises:
        ValueError: ``in_channels`` and ``up_factors`` differ in length, or an up factor is < 2.
    """

    def __init__(self, out_channels: int, in_channels: Sequence[int], up_factors: Sequence[int], use_dcn: bool = True,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        if len(in_channels) != len(up_factors):
            raise ValueError(f'IDAUp: {len(in_channels)} in_channels but {len(up_factors)} up_factors')
        for k in range(1, len(in_channels)):
            f = int(up_factors[k])
            if f < 2:
                raise ValueError(f'IDAUp: up factor of level {k} must be >= 2, got {f}')
            up = nn.ConvTranspose2d(out_channels, out_channels, 2 * f, stride=f, padding=f // 2, output_padding=0,
                                    groups=out_channels, bias=False)
            fill_up_weights(up)
            self.add_module(f'proj_{k}', DLAConvBlock(in_channels[k], out_channels, use_dcn, norm_cfg))
            self.add_module(f'up_{k}', up)
            self.add_module(f'node_{k}', DLAConvBlock(out_channels, out_channels, use_dcn, norm_cfg))
        self.num_levels = len(in_channels)

    def forward(self, layers: List[Tensor], start: int, end: int) -> None:
        """Aggregate ``layers[start + 1:end]`` in place (see the class docstring).

        Args:
            layers (list[Tensor]): features; ``layers[start + k]`` is (B, in_channels[k], H / up_factors[k],
                W / up_factors[k]) for k >= 1, ``layers[start]`` is (B, out_channels, H, W).
            start (int): index of the finest level.
            end (int): one past the coarsest level; ``end - start`` must not exceed ``len(in_channels)``.

        Raises:
            ValueError: an up-sampled level does not have the size of the level it is added to (the input's height
                and width were not multiples of the total stride).
        """
        for i in range(start + 1, end):
            k = i - start
            up = getattr(self, f'up_{k}')(getattr(self, f'proj_{k}')(layers[i]))
            if up.shape[-2:] != layers[i - 1].shape[-2:]:
                raise ValueError(
                    f'DLANeck: a level of size {tuple(layers[i].shape[-2:])} is up-sampled to {tuple(up.shape[-2:])}, '
                    f'but the level it joins has size {tuple(layers[i - 1].shape[-2:])}: the image height and width '
                    'must be multiples of the backbone\'s total stride (32 for DLA-34; CenterNet pads to them)')
            layers[i] = getattr(self, f'node_{k}')(up + layers[i - 1])


class DLAUp(nn.Module):
    """Deep layer aggregation up-sampling: chains of :class:`IDAUp` from the coarsest level down.

    ``DLAUp(startp, channels, scales)`` of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py``
    on levels with strides ``2 ** j`` relative to the first (scales 1, 2, 4, ...). For n levels, ``ida_{i}``
    (i = 0 .. n - 2) aggregates the coarsest i + 2 levels into level n - 2 - i's resolution and channels; its
    inputs are the original level n - 2 - i and the outputs of ``ida_{i-1}`` (channels[n - 1 - i], already at that
    scale). For channels (64, 128, 256, 512): ``ida_0`` (256; 512 -> 256), ``ida_1`` (128; 256, 256 -> 128),
    ``ida_2`` (64; 128, 128, 128 -> 64).

    Args:
        in_channels (Sequence[int]): channels of the aggregated levels, finest first (>= 2 values).
        use_dcn (bool): see :class:`DLAConvBlock`. Defaults to True.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN')``.

    Shape:
        - Input: list of n features (B, in_channels[j], H / 2 ** j, W / 2 ** j) (modified in place).
        - Output: list of n features, the j-th (B, in_channels[j], H / 2 ** j, W / 2 ** j); the last is the input's
          last, the first aggregates every level.
    """

    def __init__(self, in_channels: Sequence[int], use_dcn: bool = True,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        channels = list(in_channels)
        if len(channels) < 2:
            raise ValueError(f'DLAUp needs at least 2 levels, got in_channels={channels}')
        level_channels = list(channels)  # channels of each level as the IDAs leave it
        scales = [2 ** j for j in range(len(channels))]  # scale of each level as the IDAs leave it
        for i in range(len(channels) - 1):
            j = len(channels) - 2 - i
            self.add_module(
                f'ida_{i}',
                IDAUp(channels[j], level_channels[j:], [s // scales[j] for s in scales[j:]], use_dcn, norm_cfg))
            scales[j + 1:] = [scales[j]] * (len(channels) - j - 1)
            level_channels[j + 1:] = [channels[j]] * (len(channels) - j - 1)
        self.num_levels = len(channels)

    def forward(self, layers: List[Tensor]) -> List[Tensor]:
        """See the class docstring for shapes."""
        n = self.num_levels
        out = [layers[-1]]
        for i in range(n - 1):
            getattr(self, f'ida_{i}')(layers, n - i - 2, n)
            out.insert(0, layers[-1])
        return out


@MODELS.register_module()
class DLANeck(BaseModule):
    """CenterNet's DLA-34 up-sampling neck: DLAUp + IDAUp on modulated deformable convolutions, output stride 4.

    The ``dla_up`` / ``ida_up`` part of ``DLASeg`` (xingyizhou/CenterNet@4c50fd3
    ``src/lib/models/networks/pose_dla_dcn.py``, ``down_ratio=4``, ``last_level=5``):

    1. ``dla_up`` (:class:`DLAUp`) on levels ``first_level`` .. end of the backbone (strides 4 .. 32 of DLA-34)
       returns them aggregated, finest first: (64 @ 4, 128 @ 8, 256 @ 16, 512 @ 32) for DLA-34;
    2. ``ida_up`` (:class:`IDAUp`, ``out_channels = in_channels[first_level]``, factors 1, 2, 4, ...) folds the first
       ``last_level - first_level`` of them (64 @ 4, 128 @ 8, 256 @ 16) into one map at stride
       ``2 ** first_level``, the neck's output.

    Every 3x3 conv is :class:`DLAConvBlock` (DCN -> BN -> ReLU); every up-sampling a depth-wise transposed conv with
    bilinear initial weights (:func:`fill_up_weights`). DLA-34 (the defaults): 3,940,336 parameters, the
    released ``dla_up.*`` + ``ida_up.*``. ``init_weights`` keeps the construction-time initialisation (mmcv's for the
    DCN, bilinear for ``up_*``, BN weight 1 / bias 0) unless ``init_cfg`` is given.

    Args:
        in_channels (Sequence[int]): channels of the backbone's levels, stride ``2 ** i`` for level i. Defaults to
            DLA-34's (16, 32, 64, 128, 256, 512).
        first_level (int): first level used, log2 of the output stride (original: log2(down_ratio), down_ratio in
            2, 4, 8, 16). Defaults to 2.
        last_level (int): one past the last level ``ida_up`` aggregates. Defaults to 5.
        use_dcn (bool): ``mmcv.ops.ModulatedDeformConv2dPack`` (as the original) or plain 3x3 convolutions (for
            mmcv without ops; then the released weights do not apply). Defaults to True.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)``.
        init_cfg (dict | list[dict], optional): mmengine init config. Defaults to None.

    Raises:
        ValueError: ``first_level`` not in 1 .. len(in_channels) - 2, or ``last_level`` not in
            first_level + 1 .. len(in_channels); in ``forward``, a wrong number of inputs or sizes that are not
            multiples of the total stride.
        ImportError: ``use_dcn=True`` without mmcv's compiled ops.

    Shape:
        - Input: tuple of len(in_channels) features (B, in_channels[i], H / 2 ** i, W / 2 ** i) (the output of
          :class:`mmkp.models.backbones.DLA`); H and W of the image multiples of 2 ** (len(in_channels) - 1).
        - Output: 1-tuple (B, in_channels[first_level], H / 2 ** first_level, W / 2 ** first_level): (B, 64, H / 4,
          W / 4) for DLA-34, 512 x 512 -> 128 x 128.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (16, 32, 64, 128, 256, 512),
                 first_level: int = 2,
                 last_level: int = 5,
                 use_dcn: bool = True,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = tuple(int(c) for c in in_channels)
        if not 1 <= first_level <= len(in_channels) - 2:
            raise ValueError(f'DLANeck: first_level must be in 1..{len(in_channels) - 2} for {len(in_channels)} '
                             f'levels, got {first_level}')
        if not first_level < last_level <= len(in_channels):
            raise ValueError(f'DLANeck: last_level must be in {first_level + 1}..{len(in_channels)}, got {last_level}')
        self.in_channels = in_channels
        self.first_level = first_level
        self.last_level = last_level
        self.use_dcn = use_dcn
        self.out_channels = in_channels[first_level]
        self.dla_up = DLAUp(in_channels[first_level:], use_dcn, norm_cfg)
        self.ida_up = IDAUp(self.out_channels, in_channels[first_level:last_level],
                            [2 ** i for i in range(last_level - first_level)], use_dcn, norm_cfg)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor]:
        """Aggregate the backbone's levels into one stride ``2 ** first_level`` map.

        Args:
            inputs (Sequence[Tensor]): len(in_channels) features, level i (B, in_channels[i], H / 2 ** i,
                W / 2 ** i); not modified.

        Returns:
            tuple[Tensor]: ``(feat, )``, feat (B, in_channels[first_level], H / 2 ** first_level,
            W / 2 ** first_level).

        Raises:
            ValueError: ``len(inputs) != len(in_channels)``, or sizes that are not multiples of the total stride.
        """
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'DLANeck expects {len(self.in_channels)} backbone levels, got {len(inputs)}')
        levels = self.dla_up(list(inputs[self.first_level:]))
        y = levels[:self.last_level - self.first_level]
        self.ida_up(y, 0, len(y))
        return (y[-1], )
