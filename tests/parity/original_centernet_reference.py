"""An independent plain-PyTorch reference of the original CenterNet (Objects as Points) networks, for parity tests.

Written by the mmkp team from reading xingyizhou/CenterNet @ 4c50fd3 (2022-11-10):

* ``src/lib/models/networks/pose_dla_dcn.py``: ``BasicBlock``, ``Root``, ``Tree``, ``DLA`` / ``dla34``,
  ``DeformConv``, ``IDAUp``, ``DLAUp``, ``DLASeg`` (``get_pose_net(34, heads, head_conv=256)``, the network of
  ``ctdet_coco_dla_2x.pth``);
* ``src/lib/models/networks/resnet_dcn.py``: ``BasicBlock``, ``PoseResNet`` with its ``deconv_layers``
  (``get_pose_net(18, heads, head_conv=64)``, the network of ``ctdet_coco_resdcn18.pth``);
* ``src/lib/models/networks/large_hourglass.py``: ``convolution``, ``residual``, ``kp_module``, ``exkp`` /
  ``HourglassNet`` (2 stacks, the network of ``ctdet_coco_hg.pth``);
* ``src/lib/models/networks/DCNv2/dcn_v2.py`` (``DCN``) and ``DCNv2/src/cuda/dcn_v2_im2col_cuda.cu``
  (``modulated_deformable_im2col_gpu_kernel``, ``dmcn_im2col_bilinear``): the modulated deformable convolution;
* ``src/lib/models/decode.py`` (``_nms``, ``_topk``, ``ctdet_decode``) and ``src/lib/detectors/ctdet.py``
  (``process``: the sigmoid before decoding).

Nothing here imports mmcv, mmdet or mmkp: the deformable convolution is :func:`modulated_deform_conv2d`, bilinear
sampling written with ``gather``. The module tree (attribute names, ``Sequential`` indices, registration order) is
the original's, so ``state_dict()`` has exactly the keys, shapes and order of the released files (the lists under
``tests.conftest.ORIGINAL_CHECKPOINTS``), which ``tests/parity/test_centernet_original_forward.py`` asserts.
The forward passes follow the original's, quirks included (``Tree`` computes a projection that a deeper tree
discards; ``DLAUp`` / ``IDAUp`` rewrite the list of levels in place). Only inference is modelled (``eval()``).
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ``opts.py`` ctdet heads of the COCO models, in the order the original registers them.
COCO_HEADS: Dict[str, int] = {'hm': 80, 'wh': 2, 'reg': 2}
BN_MOMENTUM = 0.1


# ---------------------------------------------------------------------------------------------------------------
# Modulated deformable convolution (DCNv2), plain PyTorch
# ---------------------------------------------------------------------------------------------------------------


def modulated_deform_conv2d(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Optional[Tensor],
                            stride: int = 1, padding: int = 1, dilation: int = 1,
                            floor: Callable[[Tensor], Tensor] = torch.floor) -> Tensor:
    """DCNv2 forward (one deformable group) as ``modulated_deformable_im2col_gpu_kernel`` + a GEMM compute it.

    For output cell (oy, ox) and kernel tap k = i * kw + j the input is sampled at
    ``(oy * stride - padding + i * dilation + offset[:, 2k], ox * stride - padding + j * dilation + offset[:, 2k + 1])``
    (offset channels interleaved per tap: dy then dx), bilinearly, each of the four neighbours counting 0 outside the
    image (``dmcn_im2col_bilinear``), the whole sample 0 unless -1 < y < H and -1 < x < W, then multiplied by
    ``mask[:, k]``; the columns are contracted with ``weight`` and ``bias`` is added.

    Args:
        x (Tensor): (N, C, H, W).
        offset (Tensor): (N, 2 * kh * kw, Ho, Wo), (dy, dx) per tap.
        mask (Tensor): (N, kh * kw, Ho, Wo), already through the sigmoid.
        weight (Tensor): (O, C, kh, kw).
        bias (Tensor, optional): (O, ).
        stride, padding, dilation (int): as a convolution's (square).
        floor (callable): the floor of the sampling coordinates (the original's ``floor``); a test may pass another
            rounding to reproduce an implementation's. Defaults to ``torch.floor``.

    Returns:
        Tensor: (N, O, Ho, Wo), Ho = (H + 2 padding - dilation (kh - 1) - 1) // stride + 1 (Wo alike).
    """
    n, c, h, w = x.shape
    out_c, in_c, kh, kw = weight.shape
    assert in_c == c, f'weight has {in_c} input channels, x {c}'
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    taps = kh * kw
    assert offset.shape == (n, 2 * taps, ho, wo), f'offset {tuple(offset.shape)}'
    assert mask.shape == (n, taps, ho, wo), f'mask {tuple(mask.shape)}'
    dtype, device = x.dtype, x.device
    tap_y = (torch.arange(kh, device=device, dtype=dtype) * dilation).repeat_interleave(kw)  # (taps, ): i of k
    tap_x = (torch.arange(kw, device=device, dtype=dtype) * dilation).repeat(kh)  # (taps, ): j of k
    base_y = torch.arange(ho, device=device, dtype=dtype) * stride - padding
    base_x = torch.arange(wo, device=device, dtype=dtype) * stride - padding
    off = offset.view(n, taps, 2, ho, wo)
    ys = base_y.view(1, 1, ho, 1) + tap_y.view(1, taps, 1, 1) + off[:, :, 0]  # (n, taps, ho, wo)
    xs = base_x.view(1, 1, 1, wo) + tap_x.view(1, taps, 1, 1) + off[:, :, 1]
    y0, x0 = floor(ys), floor(xs)
    ly, lx = ys - y0, xs - x0
    hy, hx = 1 - ly, 1 - lx
    flat = x.reshape(n, c, h * w)
    sampled = x.new_zeros(n, c, taps, ho, wo)
    for dy, dx, corner_weight in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        yy, xx = y0 + dy, x0 + dx
        valid = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().view(n, 1, -1).expand(n, c, -1)
        values = flat.gather(2, index).view(n, c, taps, ho, wo)
        sampled = sampled + values * (corner_weight * valid).unsqueeze(1)
    inside = (ys > -1) & (xs > -1) & (ys < h) & (xs < w)
    sampled = sampled * (mask * inside).unsqueeze(1)
    out = torch.einsum('ock,nckl->nol', weight.reshape(out_c, c, taps), sampled.view(n, c, taps, ho * wo))
    out = out.reshape(n, out_c, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


#: the op every :class:`DCN` calls; a test may point it at another implementation to measure the difference.
DeformFn = Callable[..., Tensor]


class DCN(nn.Module):
    """``DCNv2/dcn_v2.py::DCN``: ``weight``, ``bias`` and the 27-channel offset / mask conv ``conv_offset_mask``.

    ``forward``: ``o1, o2, m = chunk(conv_offset_mask(x), 3)``, ``offset = cat(o1, o2)``, ``mask = sigmoid(m)``,
    then :func:`modulated_deform_conv2d` (or ``deform_fn`` when set, same signature).

    Shape:
        - Input: (N, in_channels, H, W).
        - Output: (N, out_channels, H, W) (3x3, stride 1, padding 1 as every use in CenterNet).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        self.conv_offset_mask = nn.Conv2d(in_channels, 3 * kernel_size * kernel_size, kernel_size, stride=stride,
                                          padding=padding, bias=True)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)
        self.deform_fn: Optional[DeformFn] = None

    def forward(self, x: Tensor) -> Tensor:
        o1, o2, m = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        fn = self.deform_fn or modulated_deform_conv2d
        return fn(x, torch.cat((o1, o2), dim=1), torch.sigmoid(m), self.weight, self.bias, self.stride, self.padding,
                  self.dilation)


def set_deform_fn(model: nn.Module, fn: Optional[DeformFn]) -> int:
    """Point every :class:`DCN` of ``model`` at ``fn`` (None: :func:`modulated_deform_conv2d`); returns how many."""
    count = 0
    for m in model.modules():
        if isinstance(m, DCN):
            m.deform_fn = fn
            count += 1
    return count


def bilinear_up_weights(up: nn.ConvTranspose2d) -> None:
    """``fill_up_weights``: every channel's (k, k) kernel is the outer product of ``1 - |i / f - c|``,
    f = ceil(k / 2), c = (2 f - 1 - f % 2) / (2 f)."""
    k = up.weight.shape[2]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    line = torch.tensor([1 - abs(i / f - c) for i in range(k)])
    with torch.no_grad():
        up.weight.copy_((line[:, None] * line[None, :]).expand_as(up.weight))


def _head(in_channels: int, head_conv: int, out_channels: int) -> nn.Sequential:
    """``Sequential(Conv2d 3x3 (bias), ReLU, Conv2d 1x1 (bias))``: keys ``.0.*`` and ``.2.*``."""
    return nn.Sequential(nn.Conv2d(in_channels, head_conv, 3, padding=1, bias=True), nn.ReLU(inplace=True),
                         nn.Conv2d(head_conv, out_channels, 1, bias=True))


# ---------------------------------------------------------------------------------------------------------------
# pose_dla_dcn.py: DLA-34 + DLAUp / IDAUp + heads
# ---------------------------------------------------------------------------------------------------------------


class DLABlock(nn.Module):
    """``pose_dla_dcn.BasicBlock``: conv3x3(stride) BN ReLU conv3x3 BN, + residual (given, or x), ReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        skip = x if residual is None else residual
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + skip)


class DLARoot(nn.Module):
    """``pose_dla_dcn.Root`` (kernel 1, DLA-34 has no residual roots): ReLU(BN(conv1x1(cat(children))))."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def forward(self, *children: Tensor) -> Tensor:
        y = self.bn(self.conv(torch.cat(children, 1)))
        if self.residual:
            y = y + children[0]
        return self.relu(y)


class DLATree(nn.Module):
    """``pose_dla_dcn.Tree``: children ``tree1``, ``tree2``, ``root`` (levels == 1 only), ``project``."""

    def __init__(self, levels: int, in_channels: int, out_channels: int, stride: int = 1, level_root: bool = False,
                 root_dim: int = 0) -> None:
        super().__init__()
        root_dim = root_dim or 2 * out_channels
        if level_root:
            root_dim += in_channels
        if levels == 1:
            self.tree1 = DLABlock(in_channels, out_channels, stride)
            self.tree2 = DLABlock(out_channels, out_channels, 1)
            self.root = DLARoot(root_dim, out_channels)
        else:
            self.tree1 = DLATree(levels - 1, in_channels, out_channels, stride, root_dim=0)
            self.tree2 = DLATree(levels - 1, out_channels, out_channels, root_dim=root_dim + out_channels)
        self.levels = levels
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False),
                                         nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM))

    def forward(self, x: Tensor, residual: Optional[Tensor] = None, children: Optional[List[Tensor]] = None) -> Tensor:
        # as the original: ``residual`` is ignored (recomputed), and with levels > 1 the projection is computed and
        # handed to a sub-tree that ignores it
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        residual = self.project(bottom) if self.project is not None else bottom
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, residual)
        if self.levels == 1:
            return self.root(self.tree2(x1), x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


class DLA34(nn.Module):
    """``pose_dla_dcn.DLA`` as ``dla34(pretrained=True)`` builds it: levels (1, 1, 1, 2, 2, 1), channels
    (16, 32, 64, 128, 256, 512), and the ImageNet classifier ``fc`` (1x1 conv 512 -> 1000) that
    ``load_pretrained_model`` attaches last and ``forward`` never runs.

    Shape:
        - Input: (N, 3, H, W), H and W multiples of 32.
        - Output: list of 6 levels (N, channels[i], H / 2 ** i, W / 2 ** i).
    """

    levels = (1, 1, 1, 2, 2, 1)
    channels = (16, 32, 64, 128, 256, 512)

    def __init__(self) -> None:
        super().__init__()
        lv, ch = self.levels, self.channels
        self.base_layer = nn.Sequential(nn.Conv2d(3, ch[0], 7, stride=1, padding=3, bias=False),
                                        nn.BatchNorm2d(ch[0], momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
        self.level0 = self._conv_level(ch[0], ch[0], lv[0], 1)
        self.level1 = self._conv_level(ch[0], ch[1], lv[1], 2)
        self.level2 = DLATree(lv[2], ch[1], ch[2], 2, level_root=False)
        self.level3 = DLATree(lv[3], ch[2], ch[3], 2, level_root=True)
        self.level4 = DLATree(lv[4], ch[3], ch[4], 2, level_root=True)
        self.level5 = DLATree(lv[5], ch[4], ch[5], 2, level_root=True)
        self.fc = nn.Conv2d(ch[5], 1000, 1, stride=1, padding=0, bias=True)

    @staticmethod
    def _conv_level(inplanes: int, planes: int, convs: int, stride: int) -> nn.Sequential:
        mods: List[nn.Module] = []
        for i in range(convs):
            mods += [nn.Conv2d(inplanes if i == 0 else planes, planes, 3, stride=stride if i == 0 else 1, padding=1,
                               bias=False), nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.base_layer(x)
        levels = []
        for i in range(6):
            x = getattr(self, f'level{i}')(x)
            levels.append(x)
        return levels


class DeformConv(nn.Module):
    """``pose_dla_dcn.DeformConv``: ``actf`` (BN, ReLU) registered before ``conv`` (:class:`DCN`), applied after."""

    def __init__(self, chi: int, cho: int) -> None:
        super().__init__()
        self.actf = nn.Sequential(nn.BatchNorm2d(cho, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
        self.conv = DCN(chi, cho, 3, stride=1, padding=1, dilation=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.actf(self.conv(x))


class IDAUp(nn.Module):
    """``pose_dla_dcn.IDAUp(o, channels, up_f)``: for k >= 1 ``proj_k``, ``up_k`` (depth-wise ConvTranspose2d
    2f x 2f, stride f, padding f // 2, bilinear), ``node_k``; ``forward`` rewrites ``layers[startp + 1:endp]``."""

    def __init__(self, o: int, channels: Sequence[int], up_f: Sequence[int]) -> None:
        super().__init__()
        for k in range(1, len(channels)):
            f = int(up_f[k])
            up = nn.ConvTranspose2d(o, o, f * 2, stride=f, padding=f // 2, output_padding=0, groups=o, bias=False)
            bilinear_up_weights(up)
            setattr(self, f'proj_{k}', DeformConv(channels[k], o))
            setattr(self, f'up_{k}', up)
            setattr(self, f'node_{k}', DeformConv(o, o))

    def forward(self, layers: List[Tensor], startp: int, endp: int) -> None:
        for i in range(startp + 1, endp):
            k = i - startp
            layers[i] = getattr(self, f'up_{k}')(getattr(self, f'proj_{k}')(layers[i]))
            layers[i] = getattr(self, f'node_{k}')(layers[i] + layers[i - 1])


class DLAUp(nn.Module):
    """``pose_dla_dcn.DLAUp(startp, channels, scales)``: ``ida_i`` from the coarsest pair down; each IDA's input
    channels and up factors are those its predecessors leave (the original mutates its lists; here copies)."""

    def __init__(self, startp: int, channels: Sequence[int], scales: Sequence[int]) -> None:
        super().__init__()
        self.startp = startp
        level_channels = list(channels)
        level_scales = list(scales)
        n = len(channels)
        for i in range(n - 1):
            j = n - 2 - i
            setattr(self, f'ida_{i}', IDAUp(channels[j], level_channels[j:],
                                            [s // level_scales[j] for s in level_scales[j:]]))
            level_scales[j + 1:] = [level_scales[j]] * (n - 1 - j)
            level_channels[j + 1:] = [channels[j]] * (n - 1 - j)

    def forward(self, layers: List[Tensor]) -> List[Tensor]:
        out = [layers[-1]]
        for i in range(len(layers) - self.startp - 1):
            getattr(self, f'ida_{i}')(layers, len(layers) - i - 2, len(layers))
            out.insert(0, layers[-1])
        return out


class DLASeg(nn.Module):
    """``pose_dla_dcn.DLASeg('dla34', heads, down_ratio=4, final_kernel=1, last_level=5, head_conv=256)``.

    Shape:
        - Input: (N, 3, H, W), H and W multiples of 32.
        - Output: ``[dict(hm=(N, 80, H / 4, W / 4), wh=(N, 2, ...), reg=(N, 2, ...))]`` (heatmap logits).
    """

    def __init__(self, heads: Dict[str, int] = COCO_HEADS, head_conv: int = 256) -> None:
        super().__init__()
        self.first_level, self.last_level = 2, 5
        self.base = DLA34()
        channels = list(self.base.channels[self.first_level:])
        self.dla_up = DLAUp(self.first_level, channels, [2 ** i for i in range(len(channels))])
        self.ida_up = IDAUp(channels[0], channels[:self.last_level - self.first_level],
                            [2 ** i for i in range(self.last_level - self.first_level)])
        self.heads = dict(heads)
        for name, classes in self.heads.items():
            setattr(self, name, _head(channels[0], head_conv, classes))

    def forward(self, x: Tensor) -> List[Dict[str, Tensor]]:
        x = self.dla_up(self.base(x))
        y = [x[i].clone() for i in range(self.last_level - self.first_level)]
        self.ida_up(y, 0, len(y))
        return [{name: getattr(self, name)(y[-1]) for name in self.heads}]


# ---------------------------------------------------------------------------------------------------------------
# resnet_dcn.py: ResNet-18 + DCN up-sampling + heads
# ---------------------------------------------------------------------------------------------------------------


class ResBlock(DLABlock):
    """``resnet_dcn.BasicBlock`` (torchvision's): conv1 bn1 relu conv2 bn2 (+ ``downsample(x)`` or x), relu."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__(inplanes, planes, stride)  # the same layers as the DLA block, then ``downsample``
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x, self.downsample(x) if self.downsample is not None else None)


class PoseResNet(nn.Module):
    """``resnet_dcn.PoseResNet(BasicBlock, [2, 2, 2, 2], heads, head_conv=64)`` (ResNet-18-DCN).

    ``deconv_layers`` is one ``Sequential`` of 6 modules per stage (256, 128, 64 channels): DCN 3x3 (with bias),
    BN, ReLU, ConvTranspose2d(4, stride 2, padding 1, no bias, bilinear init), BN, ReLU.

    Shape:
        - Input: (N, 3, H, W), H and W multiples of 32.
        - Output: ``[dict(hm=(N, 80, H / 4, W / 4), wh=(N, 2, ...), reg=(N, 2, ...))]`` (heatmap logits).
    """

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), heads: Dict[str, int] = COCO_HEADS,
                 head_conv: int = 64) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        stages: List[nn.Module] = []
        for planes in (256, 128, 64):
            up = nn.ConvTranspose2d(planes, planes, 4, stride=2, padding=1, output_padding=0, bias=False)
            bilinear_up_weights(up)
            stages += [DCN(self.inplanes, planes, 3, stride=1, padding=1, dilation=1),
                       nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True), up,
                       nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)]
            self.inplanes = planes
        self.deconv_layers = nn.Sequential(*stages)
        self.heads = dict(heads)
        for name, classes in self.heads.items():
            setattr(self, name, _head(64, head_conv, classes))

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes, momentum=BN_MOMENTUM))
        mods = [ResBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods += [ResBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> List[Dict[str, Tensor]]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.deconv_layers(x)
        return [{name: getattr(self, name)(x) for name in self.heads}]


# ---------------------------------------------------------------------------------------------------------------
# large_hourglass.py: Hourglass-104 (2 stacks) + heads
# ---------------------------------------------------------------------------------------------------------------


class HGConvolution(nn.Module):
    """``large_hourglass.convolution(k, inp, out, stride, with_bn)``: ``conv`` (bias iff no BN), ``bn`` (BN, or an
    empty ``Sequential``), ``relu``."""

    def __init__(self, k: int, inp_dim: int, out_dim: int, stride: int = 1, with_bn: bool = True) -> None:
        super().__init__()
        pad = (k - 1) // 2
        self.conv = nn.Conv2d(inp_dim, out_dim, k, padding=pad, stride=stride, bias=not with_bn)
        self.bn = nn.BatchNorm2d(out_dim) if with_bn else nn.Sequential()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class HGResidual(nn.Module):
    """``large_hourglass.residual``: conv1 bn1 relu1 conv2 bn2, + ``skip`` (conv1x1 + BN when the stride or the
    width changes, else an empty ``Sequential``), relu."""

    def __init__(self, k: int, inp_dim: int, out_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inp_dim, out_dim, 3, padding=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(out_dim)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_dim)
        self.skip = (nn.Sequential(nn.Conv2d(inp_dim, out_dim, 1, stride=stride, bias=False), nn.BatchNorm2d(out_dim))
                     if stride != 1 or inp_dim != out_dim else nn.Sequential())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu(y + self.skip(x))


def _residuals(inp_dim: int, out_dim: int, modules: int, stride: int = 1) -> nn.Sequential:
    """``make_layer`` (stride 1) / ``make_hg_layer`` (first stride 2): inp -> out, then out -> out."""
    return nn.Sequential(HGResidual(3, inp_dim, out_dim, stride),
                         *[HGResidual(3, out_dim, out_dim) for _ in range(modules - 1)])


def _residuals_revr(inp_dim: int, out_dim: int, modules: int) -> nn.Sequential:
    """``make_layer_revr``: inp -> inp (modules - 1 times), then inp -> out."""
    return nn.Sequential(*[HGResidual(3, inp_dim, inp_dim) for _ in range(modules - 1)],
                         HGResidual(3, inp_dim, out_dim))


class KPModule(nn.Module):
    """``large_hourglass.kp_module`` with ``make_pool_layer`` = empty ``Sequential`` and ``make_hg_layer`` (stride 2
    in ``low1``): ``up1(x) + upsample2x_nearest(low3(low2(low1(x))))``."""

    def __init__(self, n: int, dims: Sequence[int], modules: Sequence[int]) -> None:
        super().__init__()
        curr_mod, next_mod = modules[0], modules[1]
        curr_dim, next_dim = dims[0], dims[1]
        self.up1 = _residuals(curr_dim, curr_dim, curr_mod)
        self.max1 = nn.Sequential()
        self.low1 = _residuals(curr_dim, next_dim, curr_mod, stride=2)
        self.low2 = (KPModule(n - 1, dims[1:], modules[1:]) if n > 1 else _residuals(next_dim, next_dim, next_mod))
        self.low3 = _residuals_revr(next_dim, curr_dim, curr_mod)
        self.up2 = nn.Upsample(scale_factor=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.up1(x) + self.up2(self.low3(self.low2(self.low1(self.max1(x)))))


class HourglassNet(nn.Module):
    """``large_hourglass.HourglassNet(heads, 2)`` (``exkp`` with n 5, dims (256, 256, 384, 384, 384, 512), modules
    (2, 2, 2, 2, 2, 4), cnv_dim 256); the heads ``make_kp_layer``: ``Sequential(convolution(3, 256, 256,
    with_bn=False), Conv2d 1x1)`` per stack.

    Shape:
        - Input: (N, 3, H, W), H and W multiples of 128.
        - Output: one dict per stack, ``hm`` (N, 80, H / 4, W / 4) logits, ``wh`` and ``reg`` (N, 2, H / 4, W / 4).
    """

    def __init__(self, heads: Dict[str, int] = COCO_HEADS, num_stacks: int = 2) -> None:
        super().__init__()
        n, dims, modules, cnv_dim = 5, (256, 256, 384, 384, 384, 512), (2, 2, 2, 2, 2, 4), 256
        curr_dim = dims[0]
        self.nstack = num_stacks
        self.heads = dict(heads)
        self.pre = nn.Sequential(HGConvolution(7, 3, 128, stride=2), HGResidual(3, 128, 256, stride=2))
        self.kps = nn.ModuleList([KPModule(n, dims, modules) for _ in range(num_stacks)])
        self.cnvs = nn.ModuleList([HGConvolution(3, curr_dim, cnv_dim) for _ in range(num_stacks)])
        self.inters = nn.ModuleList([HGResidual(3, curr_dim, curr_dim) for _ in range(num_stacks - 1)])
        self.inters_ = nn.ModuleList([
            nn.Sequential(nn.Conv2d(curr_dim, curr_dim, 1, bias=False), nn.BatchNorm2d(curr_dim))
            for _ in range(num_stacks - 1)])
        self.cnvs_ = nn.ModuleList([
            nn.Sequential(nn.Conv2d(cnv_dim, curr_dim, 1, bias=False), nn.BatchNorm2d(curr_dim))
            for _ in range(num_stacks - 1)])
        for name, classes in self.heads.items():
            setattr(self, name, nn.ModuleList([
                nn.Sequential(HGConvolution(3, cnv_dim, curr_dim, with_bn=False), nn.Conv2d(curr_dim, classes, 1))
                for _ in range(num_stacks)]))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, image: Tensor) -> List[Dict[str, Tensor]]:
        inter = self.pre(image)
        outs = []
        for ind in range(self.nstack):
            cnv = self.cnvs[ind](self.kps[ind](inter))
            outs.append({name: getattr(self, name)[ind](cnv) for name in self.heads})
            if ind < self.nstack - 1:
                inter = self.relu(self.inters_[ind](inter) + self.cnvs_[ind](cnv))
                inter = self.inters[ind](inter)
        return outs


# ---------------------------------------------------------------------------------------------------------------
# Decoding: decode.py ctdet_decode on the sigmoid heatmap (ctdet.py process)
# ---------------------------------------------------------------------------------------------------------------


def ctdet_decode(heat: Tensor, wh: Tensor, reg: Tensor, k: int = 100) -> Tensor:
    """``decode.ctdet_decode(heat, wh, reg, K=k)`` on scores (the caller applies the sigmoid, as ``ctdet.process``).

    3x3 max-pool peaks (``_nms``); the top k per class, then the top k of those (``_topk``); center = cell + reg
    offset; box = center -/+ wh / 2, all in output cells.

    Args:
        heat (Tensor): (N, C, H, W) scores.
        wh (Tensor): (N, 2, H, W) (w, h).
        reg (Tensor): (N, 2, H, W) (dx, dy).
        k (int): detections kept.

    Returns:
        Tensor: (N, k, 6): x1, y1, x2, y2, score, class (float), in output cells.
    """
    n, c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).float()
    cls_scores, cls_inds = torch.topk(peaks.view(n, c, -1), k)  # top k of each class
    scores, order = torch.topk(cls_scores.view(n, -1), k)
    classes = torch.div(order, k, rounding_mode='floor')
    inds = cls_inds.view(n, -1).gather(1, order)
    ys = torch.div(inds, w, rounding_mode='floor').to(heat.dtype)
    xs = (inds % w).to(heat.dtype)

    def gather(feat: Tensor) -> Tensor:
        flat = feat.permute(0, 2, 3, 1).reshape(n, h * w, feat.shape[1])
        return flat.gather(1, inds.unsqueeze(2).expand(n, k, feat.shape[1]))

    off, size = gather(reg), gather(wh)
    xs, ys = xs + off[..., 0], ys + off[..., 1]
    boxes = torch.stack([xs - size[..., 0] / 2, ys - size[..., 1] / 2, xs + size[..., 0] / 2, ys + size[..., 1] / 2],
                        dim=2)
    return torch.cat([boxes, scores.unsqueeze(2), classes.unsqueeze(2).to(heat.dtype)], dim=2)


# ---------------------------------------------------------------------------------------------------------------
# Random weights that make every tensor matter
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def randomize_(model: nn.Module, calibration: Tensor, seed: int = 0, offset_std: float = 1.0,
               head_std: float = 1.0) -> nn.Module:
    """Seeded random weights for every tensor of ``model`` (in place), BN statistics included; returns it in eval.

    * convolutions (DCN ``weight`` included): normal, std sqrt(2 / fan_in); every conv / DCN bias normal(0, 0.5);
    * DCN ``conv_offset_mask``: bias normal(0, 0.5), weight normal rescaled (in the calibration pass, then again in
      eval mode) so that its output less the bias has std ``offset_std`` on the calibration batch: offsets of about
      1 cell (fractional sampling positions, some outside the map) and masks spread over (0, 1);
    * BN: a forward pass of ``calibration`` in training mode with momentum 1 sets the running statistics to that
      batch's (keeps activations of order 1 through ~100 random layers), then they are perturbed (mean +
      0.3 std normal noise, variance times uniform(0.6, 1.6)), and weight uniform(0.5, 1.5), bias normal(0, 0.3);
    * the transposed convolutions keep their bilinear weights times uniform(0.5, 1.5) per channel;
    * the last conv of each head (``hm``, ``wh``, ``reg``): weight rescaled so that its output, less the bias, has
      std ``head_std`` on the calibration batch in eval mode (random BN statistics compound over the layers; this
      keeps the heatmap away from sigmoid saturation, where equal float32 scores would make the top-k order
      arbitrary); ``hm`` bias -2.19 + normal(0, 0.5) (the original's prior, perturbed).

    Args:
        model (nn.Module): one of :class:`DLASeg`, :class:`PoseResNet`, :class:`HourglassNet`.
        calibration (Tensor): (N, 3, H, W) input for the BN statistics (N >= 2).
        seed (int): seed of a private generator (the global RNG is left alone). Defaults to 0.
        offset_std (float): scale of the DCN offsets. Defaults to 1.0.
        head_std (float): std of each head's output about its bias. Defaults to 1.0.

    Returns:
        nn.Module: ``model``, in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(t: Tensor, std: float, mean: float = 0.) -> None:
        t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * std + mean)

    def uniform(t: Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) * (high - low) + low)

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in model.modules():
        if isinstance(m, DCN):
            normal(m.weight, math.sqrt(2. / m.weight[0].numel()))
            normal(m.bias, 0.5)
            normal(m.conv_offset_mask.weight, 1 / math.sqrt(m.conv_offset_mask.weight[0].numel()))
            normal(m.conv_offset_mask.bias, 0.5)
        elif isinstance(m, nn.ConvTranspose2d):
            m.weight.mul_(torch.rand(m.weight.shape[0], 1, 1, 1, generator=gen, dtype=m.weight.dtype) + 0.5)
        elif isinstance(m, nn.Conv2d):
            normal(m.weight, math.sqrt(2. / m.weight[0].numel()))
            if m.bias is not None:
                normal(m.bias, 0.5)
    for m in bns:
        uniform(m.weight, 0.5, 1.5)
        normal(m.bias, 0.3)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = 1.0
    dcns = [m.conv_offset_mask for m in model.modules() if isinstance(m, DCN)]
    model.train()
    _rescaled_pass(model, calibration, dcns, offset_std)
    model.eval()
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
        std = m.running_var.sqrt()
        m.running_mean.add_(torch.randn(m.running_mean.shape, generator=gen, dtype=std.dtype) * 0.3 * std)
        m.running_var.mul_(torch.rand(m.running_var.shape, generator=gen, dtype=std.dtype) + 0.6)
        m.num_batches_tracked.fill_(1000)
    # in eval mode (the statistics above) the activations differ from the calibration's: rescale again there
    heads = [[m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1]
             for name in model.heads for branch in _branches(getattr(model, name))]
    _rescaled_pass(model, calibration, dcns + heads, [offset_std] * len(dcns) + [head_std] * len(heads))
    for conv in heads:
        if conv.out_channels == COCO_HEADS['hm']:
            normal(conv.bias, 0.5, -2.19)
    return model


def _rescaled_pass(model: nn.Module, x: Tensor, convs: List[nn.Conv2d], stds: Union[float, List[float]]) -> None:
    """Run ``model(x)``; on the way, scale each conv of ``convs`` so that its output less its bias has the std
    given (one value, or one per conv); the layers after it see the scaled output."""
    stds = list(stds) if isinstance(stds, (list, tuple)) else [stds] * len(convs)
    target = {id(conv): std for conv, std in zip(convs, stds)}

    def rescale(mod: nn.Module, args: tuple, out: Tensor) -> Tensor:
        bias = mod.bias.view(1, -1, 1, 1)
        factor = target[id(mod)] / (out - bias).std()
        mod.weight.mul_(factor)
        return (out - bias) * factor + bias  # what the rescaled conv gives

    hooks = [conv.register_forward_hook(rescale) for conv in convs]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()


def _branches(head: nn.Module) -> List[nn.Module]:
    """The per-stack branches of a head: a ``ModuleList`` (hourglass) or the one ``Sequential``."""
    return list(head) if isinstance(head, nn.ModuleList) else [head]
