"""Corner, cascade corner and center pooling modules (CornerNet family, CenterNet keypoint triplets).

All three share the layout of princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/utils.py::corner_pool``::

    p1 = p1_conv1(x)                      # conv3x3-BN-ReLU, in -> pool_channels
    p2 = p2_conv1(x)                      # conv3x3-BN-ReLU, in -> pool_channels
    pooled = <pooling of p1 and p2>       # differs per module
    a = p_conv1(pooled)                   # conv3x3-BN, pool_channels -> in, no bias, no ReLU
    b = conv1(x)                          # conv1x1-BN, in -> in, no bias (skip)
    y = conv2(relu1(a + b))               # conv3x3-BN-ReLU, in -> in

The pooling runs on the compiled ops of :mod:`mmkp.ops` (one fused call where the original made two or four).

Weight conversion from the original checkpoints. ``p1_conv1``, ``p2_conv1``, ``conv2``, ``look_conv1`` and
``look_conv2`` are :class:`mmcv.cnn.ConvModule` s whose ``conv`` / ``bn`` children carry the original names of the
original ``convolution`` blocks, so their keys are unchanged. The original's separate conv + BN pairs became
ConvModules; the cascade module's ``P1_look_conv`` / ``P2_look_conv`` are renamed in snake case. Every module lists
the renames in ``ORIGINAL_PREFIX_MAP`` (original key prefix -> mmkp key prefix, relative to the module), applied
by :meth:`convert_original_state_dict`.

Initialisation: ConvModule's defaults (Kaiming-normal convolutions, BN weight 1 / bias 0), like mmdet's
``BiCornerPool``; the originals used PyTorch's defaults. Pass ``init_cfg`` to change it.
"""
from typing import Dict, Mapping, Tuple

from mmcv.cnn import ConvModule
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmkp.ops import center_pool, corner_pool, directional_pool
from mmkp.ops.reference import CORNER_DIRECTIONS
from mmkp.registry import MODELS


class _PoolModuleBase(BaseModule):
    """Convolutions around the pooling shared by the three modules (see the module docstring)."""

    ORIGINAL_PREFIX_MAP: Dict[str, str] = {
        'p_conv1.': 'p_conv1.conv.',
        'p_bn1.': 'p_conv1.bn.',
        'conv1.': 'conv1.conv.',
        'bn1.': 'conv1.bn.',
    }

    def __init__(self, in_channels: int, pool_channels: int, norm_cfg: ConfigType,
                 init_cfg: OptMultiConfig) -> None:
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels), ('pool_channels', pool_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        self.in_channels = in_channels
        self.pool_channels = pool_channels
        self.p1_conv1 = ConvModule(in_channels, pool_channels, 3, padding=1, norm_cfg=norm_cfg)
        self.p2_conv1 = ConvModule(in_channels, pool_channels, 3, padding=1, norm_cfg=norm_cfg)
        self.p_conv1 = ConvModule(pool_channels, in_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=None)
        self.conv1 = ConvModule(in_channels, in_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = ConvModule(in_channels, in_channels, 3, padding=1, norm_cfg=norm_cfg)

    def _pool(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Pool and fuse.

        Args:
            x (Tensor): (N, in_channels, H, W) features.

        Returns:
            Tensor: (N, in_channels, H, W).
        """
        pooled = self._pool(x)  # (N, pool_channels, H, W)
        return self.conv2(self.relu1(self.p_conv1(pooled) + self.conv1(x)))

    @classmethod
    def convert_original_state_dict(cls, state_dict: Mapping[str, Tensor], prefix: str = '') -> Dict[str, Tensor]:
        """Rename the keys of an original module's state dict to this module's.

        Args:
            state_dict (Mapping[str, Tensor]): keys of the original module (e.g. CornerNet-Lite ``corner_pool``,
                CenterNet ``pool`` / ``pool_cross``), each optionally behind ``prefix``.
            prefix (str): common prefix of the module's keys (kept in the output). Defaults to ``''``.

        Returns:
            dict[str, Tensor]: the same tensors under mmkp's keys; keys outside ``prefix`` are kept as they are.
        """
        out = {}
        for key, value in state_dict.items():
            new_key = key
            if key.startswith(prefix):
                rel = key[len(prefix):]
                for old, new in cls.ORIGINAL_PREFIX_MAP.items():
                    if rel.startswith(old):
                        new_key = prefix + new + rel[len(old):]
                        break
            out[new_key] = value
        return out


def _check_corner(corner: str) -> Tuple[str, str]:
    if corner not in CORNER_DIRECTIONS:
        raise ValueError(f"corner must be 'top_left' or 'bottom_right', got {corner!r}")
    return CORNER_DIRECTIONS[corner]


@MODELS.register_module()
class CornerPoolModule(_PoolModuleBase):
    """Corner pooling module of CornerNet / CornerNet-Saccade / CornerNet-Squeeze.

    princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/utils.py::corner_pool``; ``corner='top_left'`` is
    ``corner_pool(dim, TopPool, LeftPool)``, ``'bottom_right'`` is ``corner_pool(dim, BottomPool, RightPool)``::

        pooled = top(p1_conv1(x)) + left(p2_conv1(x))          # top_left: mmkp.ops.corner_pool, one call
        y = conv2(relu1(p_conv1(pooled) + conv1(x)))

    Submodules (original names in brackets where they differ): ``p1_conv1``, ``p2_conv1``, ``p_conv1``
    [``p_conv1`` + ``p_bn1``], ``conv1`` [``conv1`` + ``bn1``], ``relu1``, ``conv2``; see ``ORIGINAL_PREFIX_MAP``.

    Args:
        in_channels (int): input and output channels (the original's ``dim``). Defaults to 256.
        pool_channels (int): channels of the two pooled branches. Defaults to 128.
        corner (str): ``'top_left'`` or ``'bottom_right'``. Defaults to ``'top_left'``.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)``.
        init_cfg (dict | list[dict], optional): mmengine init config. Defaults to None.

    Raises:
        ValueError: unknown ``corner`` or non-positive channel counts.

    Shapes: (N, in_channels, H, W) -> (N, in_channels, H, W).
    """

    def __init__(self,
                 in_channels: int = 256,
                 pool_channels: int = 128,
                 corner: str = 'top_left',
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        _check_corner(corner)
        super().__init__(in_channels, pool_channels, norm_cfg, init_cfg)
        self.corner = corner

    def _pool(self, x: Tensor) -> Tensor:
        return corner_pool(self.p1_conv1(x), self.p2_conv1(x), self.corner)


@MODELS.register_module()
class CascadeCornerPoolModule(_PoolModuleBase):
    """Cascade corner pooling module of CenterNet keypoint triplets.

    Duankaiwen/CenterNet@3ad3a10 ``models/CenterNet-104.py::pool`` (``tl_pool = pool(dim, TopPool, LeftPool)``,
    ``br_pool = pool(dim, BottomPool, RightPool)``). Each branch first looks along the orthogonal direction (the
    boundary maximum), then pools towards the corner. For ``'top_left'``::

        look_right = left(look_conv1(x))                              # (N, pool_channels, H, W)
        look_down = top(look_conv2(x))
        a = p1_look_conv(p1_conv1(x) + look_right)                    # conv3x3, no bias, no BN, no ReLU
        b = p2_look_conv(p2_conv1(x) + look_down)
        pooled = top(a) + left(b)                                     # mmkp.ops.corner_pool, one call
        y = conv2(relu1(p_conv1(pooled) + conv1(x)))

    ``'bottom_right'`` uses bottom / right in place of top / left.

    Submodules: those of :class:`CornerPoolModule` plus ``look_conv1``, ``look_conv2`` (conv3x3-BN-ReLU,
    in -> pool_channels) and ``p1_look_conv`` / ``p2_look_conv`` [``P1_look_conv`` / ``P2_look_conv``]
    (``nn.Conv2d`` 3x3, pool_channels -> pool_channels, no bias).

    Args:
        in_channels (int): input and output channels. Defaults to 256.
        pool_channels (int): channels of the pooled branches. Defaults to 128.
        corner (str): ``'top_left'`` or ``'bottom_right'``. Defaults to ``'top_left'``.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)``.
        init_cfg (dict | list[dict], optional): mmengine init config. Defaults to None.

    Raises:
        ValueError: unknown ``corner`` or non-positive channel counts.

    Shapes: (N, in_channels, H, W) -> (N, in_channels, H, W).
    """

    ORIGINAL_PREFIX_MAP: Dict[str, str] = {
        **_PoolModuleBase.ORIGINAL_PREFIX_MAP,
        'P1_look_conv.': 'p1_look_conv.',
        'P2_look_conv.': 'p2_look_conv.',
    }

    def __init__(self,
                 in_channels: int = 256,
                 pool_channels: int = 128,
                 corner: str = 'top_left',
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        self._directions = _check_corner(corner)
        super().__init__(in_channels, pool_channels, norm_cfg, init_cfg)
        self.corner = corner
        self.look_conv1 = ConvModule(in_channels, pool_channels, 3, padding=1, norm_cfg=norm_cfg)
        self.look_conv2 = ConvModule(in_channels, pool_channels, 3, padding=1, norm_cfg=norm_cfg)
        self.p1_look_conv = nn.Conv2d(pool_channels, pool_channels, 3, padding=1, bias=False)
        self.p2_look_conv = nn.Conv2d(pool_channels, pool_channels, 3, padding=1, bias=False)

    def _pool(self, x: Tensor) -> Tensor:
        first, second = self._directions  # ('top', 'left') or ('bottom', 'right')
        look_second = directional_pool(self.look_conv1(x), second)
        look_first = directional_pool(self.look_conv2(x), first)
        a = self.p1_look_conv(self.p1_conv1(x) + look_second)
        b = self.p2_look_conv(self.p2_conv1(x) + look_first)
        return corner_pool(a, b, self.corner)


@MODELS.register_module()
class CenterPoolModule(_PoolModuleBase):
    """Center pooling module of CenterNet keypoint triplets.

    Duankaiwen/CenterNet@3ad3a10 ``models/CenterNet-104.py::pool_cross`` with
    ``TopPool, LeftPool, BottomPool, RightPool``::

        pooled = bottom(top(p1_conv1(x))) + right(left(p2_conv1(x)))   # = column max + row max:
                                                                        #   mmkp.ops.center_pool, one call
        y = conv2(relu1(p_conv1(pooled) + conv1(x)))

    Submodules: as :class:`CornerPoolModule` (``p1_conv1``, ``p2_conv1``, ``p_conv1``, ``conv1``, ``relu1``,
    ``conv2``).

    Args:
        in_channels (int): input and output channels. Defaults to 256.
        pool_channels (int): channels of the pooled branches. Defaults to 128.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)``.
        init_cfg (dict | list[dict], optional): mmengine init config. Defaults to None.

    Raises:
        ValueError: non-positive channel counts.

    Shapes: (N, in_channels, H, W) -> (N, in_channels, H, W).
    """

    def __init__(self,
                 in_channels: int = 256,
                 pool_channels: int = 128,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(in_channels, pool_channels, norm_cfg, init_cfg)

    def _pool(self, x: Tensor) -> Tensor:
        return center_pool(self.p1_conv1(x), self.p2_conv1(x))
