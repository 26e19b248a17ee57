"""DLA-34: the Deep Layer Aggregation backbone of CenterNet (Zhou et al., Objects as Points, 2019).

Written after xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py`` (``BasicBlock``, ``Root``,
``Tree``, ``DLA``, ``dla34``), itself a copy of the ImageNet model of ucbdrive/dla ``dla.py`` (Yu et al., Deep Layer
Aggregation, 2018).

Checkpoint keys
    The modules carry the original's names, so keys map by prefix alone. :data:`ORIGINAL_KEY_RULES` maps the
    ``base.*`` keys of the released CenterNet file (``ctdet_coco_dla_2x.pth``) onto an mmdet detector whose backbone
    is :class:`DLA`; the rules follow :mod:`mmkp.converters.core` (ordered ``(regex, replacement)`` pairs, the first
    pattern that matches rewrites the key once, ``None`` drops it).
"""
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import build_norm_layer
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmkp.registry import MODELS

#: where the model comes from (docstrings, converter metadata).
DLA_ORIGINAL = 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/pose_dla_dcn.py'

#: released CenterNet DLA-34 keys (``base.*``) -> detector keys (``backbone.*``), first match wins:
#:
#: 1. ``base.fc.*`` (``weight`` [1000, 512, 1, 1], ``bias`` [1000]) is dropped: ``DLA.load_pretrained_model`` of the
#:    original attaches the ImageNet classifier as a 1x1 conv, so the released file stores it, but ``forward`` never
#:    runs it;
#: 2. ``base.<rest>`` -> ``backbone.<rest>``: every other name is the same (``base_layer.{0,1}``,
#:    ``level{0,1}.{0,1}``, ``level{2..5}.[tree{1,2}.]...{conv1,bn1,conv2,bn2}``, ``...root.{conv,bn}``,
#:    ``...project.{0,1}``), shapes included.
#:
#: The ImageNet checkpoint of DLA-34 (``dla34-ba72cf86.pth``) holds the same names without ``base.`` plus ``fc.*``:
#: the original loads it with a strict ``load_state_dict`` into this very module tree.
ORIGINAL_KEY_RULES: List[Tuple[str, Optional[str]]] = [
    (r'^base\.fc\.', None),
    (r'^base\.', 'backbone.'),
]


def _norm(norm_cfg: ConfigType, channels: int) -> nn.Module:
    return build_norm_layer(norm_cfg, channels)[1]


class DLABasicBlock(nn.Module):
    """DLA's residual block: conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, + residual, -> ReLU.

    ``BasicBlock`` of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py``. Unlike a ResNet block
    it owns no projection: the enclosing :class:`DLATree` passes the (down-sampled, projected) residual in. No
    convolution has a bias.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): stride of the first convolution. Defaults to 1.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN')`` (momentum 0.1 as the original).

    Shape:
        - Input: ``x`` (B, in_channels, H, W); ``residual`` (B, out_channels, ceil(H / stride), ceil(W / stride)),
          defaults to ``x`` (then in_channels must equal out_channels and stride be 1).
        - Output: (B, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(norm_cfg, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(norm_cfg, out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        """See the class docstring for shapes."""
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class DLARoot(nn.Module):
    """Aggregation node: ReLU(BN(conv1x1(concat(children)))) [+ the first child when ``residual``].

    ``Root`` of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py`` with ``root_kernel_size=1``
    (the only value DLA uses; the original's kernel size sets only the padding of what is always a 1x1 conv).

    Args:
        in_channels (int): sum of the children's channels.
        out_channels (int): output channels (those of the first child when ``residual``).
        residual (bool): add the first child before the ReLU. Defaults to False.
        norm_cfg (dict): normalisation layer. Defaults to ``dict(type='BN')``.

    Shape:
        - Input: children (B, C_i, H, W), sum(C_i) = in_channels.
        - Output: (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False)
        self.bn = _norm(norm_cfg, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def forward(self, *children: Tensor) -> Tensor:
        """See the class docstring for shapes."""
        x = self.bn(self.conv(torch.cat(children, dim=1)))
        if self.residual:
            x = x + children[0]
        return self.relu(x)


class DLATree(nn.Module):
    """Hierarchical deep aggregation tree of ``levels`` levels (``2 ** levels`` blocks).

    ``Tree`` of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py``. With ``levels == 1``: two
    blocks (``tree1`` with the stride and the residual ``project(downsample(x))``, ``tree2``) and a :class:`DLARoot`
    over ``(tree2 out, tree1 out, *children)``. With ``levels > 1``: ``tree1`` and ``tree2`` are trees of
    ``levels - 1``; ``tree1``'s output joins the children passed to ``tree2``, whose root aggregates them all (no
    root at this level). ``level_root`` adds the down-sampled input ``downsample(x)`` to the children.

    A tree with ``levels > 1`` and in_channels != out_channels owns a ``project`` (conv1x1 + BN) as the original does,
    but the original discards its output (the residual it computes is handed to the sub-tree, which recomputes its
    own); here it is not computed and its parameters are frozen (``requires_grad=False``), so distributed training
    needs no ``find_unused_parameters``. It stays for checkpoint compatibility (``level3.project``,
    ``level4.project`` of DLA-34: 41,728 parameters).

    Args:
        levels (int): tree depth (>= 1).
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): down-sampling of the tree (max-pool of ``downsample``, stride of the first block). Defaults
            to 1.
        level_root (bool): aggregate the down-sampled input in the root. Defaults to False.
        root_dim (int): channels entering the root; 0 means ``2 * out_channels`` (+ ``in_channels`` with
            ``level_root``). Defaults to 0.
        root_residual (bool): residual connection in the roots. Defaults to False.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN')``.

    Shape:
        - Input: (B, in_channels, H, W) and ``children``, a list of tensors (B, C_i, H / stride, W / stride) that this
          call appends to (the original's calling convention).
        - Output: (B, out_channels, H / stride, W / stride) (rounded as ``MaxPool2d`` rounds: down).
    """

    def __init__(self,
                 levels: int,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 level_root: bool = False,
                 root_dim: int = 0,
                 root_residual: bool = False,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f'a DLA tree needs levels >= 1, got {levels}')
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        if levels == 1:
            self.tree1 = DLABasicBlock(in_channels, out_channels, stride, norm_cfg=norm_cfg)
            self.tree2 = DLABasicBlock(out_channels, out_channels, 1, norm_cfg=norm_cfg)
            self.root = DLARoot(root_dim, out_channels, root_residual, norm_cfg=norm_cfg)
        else:
            self.tree1 = DLATree(levels - 1, in_channels, out_channels, stride, root_dim=0,
                                 root_residual=root_residual, norm_cfg=norm_cfg)
            self.tree2 = DLATree(levels - 1, out_channels, out_channels, root_dim=root_dim + out_channels,
                                 root_residual=root_residual, norm_cfg=norm_cfg)
        self.levels = levels
        self.level_root = level_root
        self.root_dim = root_dim
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False), _norm(norm_cfg, out_channels))
            if levels > 1:  # its output is never used (see the class docstring)
                self.project.requires_grad_(False)

    def forward(self, x: Tensor, children: Optional[List[Tensor]] = None) -> Tensor:
        """See the class docstring for shapes."""
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = self.project(bottom) if self.project is not None else bottom
            x1 = self.tree1(x, residual)
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


def _conv_level(in_channels: int, out_channels: int, num_convs: int, stride: int,
                norm_cfg: ConfigType) -> nn.Sequential:
    """``num_convs`` x (conv3x3 -> BN -> ReLU), the first with ``stride`` (``DLA._make_conv_level``)."""
    layers: List[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, stride=stride if i == 0 else 1,
                      padding=1, bias=False),
            _norm(norm_cfg, out_channels),
            nn.ReLU(inplace=True)
        ]
    return nn.Sequential(*layers)


@MODELS.register_module()
class DLA(BaseModule):
    """Deep Layer Aggregation backbone (DLA-34), six outputs at strides 1, 2, 4, 8, 16, 32.

    xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/pose_dla_dcn.py::DLA`` / ``dla34`` (the backbone of
    ``DLASeg``, CenterNet's ``dla_34``):

    * ``base_layer``: conv7x7 stride 1 (3 -> channels[0]) -> BN -> ReLU;
    * ``level0``: levels[0] x (conv3x3 -> BN -> ReLU), stride 1; ``level1``: the same to channels[1], stride 2;
    * ``level2`` .. ``level5``: :class:`DLATree` of levels[i] levels with stride 2 (max-pool), from channels[i - 1]
      to channels[i]; ``level_root`` on levels 3, 4, 5 (not 2), residual roots off (``residual_root=False``).

    DLA-34 (``depth=34``, the only one provided): levels (1, 1, 1, 2, 2, 1), channels (16, 32, 64, 128, 256, 512),
    :class:`DLABasicBlock`, 15,270,832 parameters (the released ``base.*`` less its unused ``base.fc``).

    Pretrained weights
        ``init_cfg=dict(type='Pretrained', checkpoint='dla34-ba72cf86.pth')`` (the ImageNet model of ucbdrive/dla,
        ``http://dl.yf.io/dla/models/imagenet/dla34-ba72cf86.pth``) loads every parameter: the names are the same;
        its ``fc.*`` classifier is reported as unexpected and ignored. The backbone of the released CenterNet model
        loads with ``init_cfg=dict(type='Pretrained', checkpoint='ctdet_coco_dla_2x.pth', prefix='base.')``.
        Without ``init_cfg`` every layer keeps PyTorch's default initialisation, as in the original (whose own
        initialisation is commented out; CenterNet always starts from ImageNet).

    Args:
        depth (int): 34. Defaults to 34.
        out_indices (Sequence[int]): which levels (0..5, stride ``2 ** i``) to return. Defaults to (0, 1, 2, 3, 4, 5),
            what :class:`mmkp.models.necks.DLANeck` takes.
        residual_root (bool): residual connections in the tree roots (off in DLA-34). Defaults to False.
        norm_cfg (dict): normalisation layers. Defaults to ``dict(type='BN', requires_grad=True)`` (eps 1e-5,
            momentum 0.1, as the original).
        norm_eval (bool): keep the BN layers in eval mode (frozen statistics) during training. Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine init config, e.g. the ``Pretrained`` ones above. Defaults
            to None.

    Raises:
        ValueError: ``depth`` is not 34; ``out_indices`` not in 0..5 or empty; in ``forward``, an input size the
            trees cannot take (below).

    Shape:
        - Input: (B, 3, H, W), ceil(H / 2) and ceil(W / 2) multiples of 16 (H, W multiples of 32, or one less).
          Each tree adds a max-pooled (rounding down) and a strided-conv (rounding up) path, so the original fails
          on odd sizes inside; here they are a ValueError.
        - Output: tuple with, for each i in ``out_indices``, (B, channels[i], H_i, W_i): H_0 = H, H_i =
          ceil(H / 2) / 2 ** (i - 1) for i >= 1 (= H / 2 ** i for multiples of 32: 512 x 512 -> 512, 256, 128, 64,
          32, 16).

    Example:
        >>> import torch
        >>> from mmkp.models.backbones import DLA
        >>> feats = DLA(depth=34).eval()(torch.rand(1, 3, 64, 64))
        >>> [tuple(f.shape) for f in feats]
        [(1, 16, 64, 64), (1, 32, 32, 32), (1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]
    """

    #: depth -> (levels, channels); every level above 1 is a tree of BasicBlocks.
    arch_settings = {
        34: ((1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512)),
    }

    def __init__(self,
                 depth: int = 34,
                 out_indices: Sequence[int] = (0, 1, 2, 3, 4, 5),
                 residual_root: bool = False,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if depth not in self.arch_settings:
            raise ValueError(f'DLA: unsupported depth {depth!r}; supported: {sorted(self.arch_settings)}')
        out_indices = tuple(out_indices)
        if not out_indices or any(not isinstance(i, int) or not 0 <= i <= 5 for i in out_indices):
            raise ValueError(f'DLA: out_indices must be a non-empty subset of 0..5, got {out_indices}')
        levels, channels = self.arch_settings[depth]
        self.depth = depth
        self.levels = levels
        self.channels = channels
        self.out_indices = out_indices
        self.norm_eval = norm_eval
        self.base_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, stride=1, padding=3, bias=False), _norm(norm_cfg, channels[0]),
            nn.ReLU(inplace=True))
        self.level0 = _conv_level(channels[0], channels[0], levels[0], 1, norm_cfg)
        self.level1 = _conv_level(channels[0], channels[1], levels[1], 2, norm_cfg)
        for i in range(2, 6):
            self.add_module(
                f'level{i}',
                DLATree(levels[i], channels[i - 1], channels[i], stride=2, level_root=i > 2,
                        root_residual=residual_root, norm_cfg=norm_cfg))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Run the six levels.

        Args:
            x (Tensor): images (B, 3, H, W).

        Returns:
            tuple[Tensor]: the features of ``out_indices``, level i (B, channels[i], ~H / 2 ** i, ~W / 2 ** i).
        """
        height, width = x.shape[-2:]
        if (height + 1) // 2 % 16 or (width + 1) // 2 % 16:
            raise ValueError(f'DLA: input size {height} x {width} not supported: the trees need even sizes at every '
                             'level, i.e. ceil(H / 2) and ceil(W / 2) multiples of 16 (pad images to multiples of 32, '
                             "e.g. DetDataPreprocessor(pad_size_divisor=32))")
        x = self.base_layer(x)
        outs = []
        for i in range(6):
            x = getattr(self, f'level{i}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'DLA':
        """Set train / eval mode; with ``norm_eval`` the BN layers stay in eval mode."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

