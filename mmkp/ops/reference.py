"""Pure-PyTorch references of the mmkp keypoint ops.

The tests compare the compiled kernels with these, and :mod:`mmkp.ops` falls back to them (with one warning) when
``mmkp._ext`` is missing. They follow the same conventions as the kernels, including the original backward tie
rule: every pooled output takes its value -- and routes its gradient -- from one arg-max element chosen as the
first one met when scanning from the far end of its window with a strict ``>`` (CornerNet-Lite
``core/models/py_utils/_cpools/src/*_pool.cpp``). The outputs are built with ``gather`` from those arg-max indices,
so plain autograd reproduces that routing (``torch.cummax``, used by ``mmcv.ops.CornerPool``, would route ties to
the nearest element instead).

No argument checking here: the public wrappers in :mod:`mmkp.ops` check first.
"""
from typing import Tuple

import torch
from torch import Tensor

_AXIS = {'top': 2, 'bottom': 2, 'left': 3, 'right': 3}
_SUFFIX = {'top': True, 'bottom': False, 'left': True, 'right': False}
CORNER_DIRECTIONS = {'top_left': ('top', 'left'), 'bottom_right': ('bottom', 'right')}


def directional_argmax(x: Tensor, direction: str) -> Tensor:
    """Index (along the pooled axis) of the element each output of a directional pool takes.

    Args:
        x (Tensor): (N, C, H, W) floating map.
        direction (str): ``'top'`` (out[i] = max_{j >= i} x[j] along H), ``'bottom'`` (max_{j <= i} along H),
            ``'left'`` (max_{j >= i} along W) or ``'right'`` (max_{j <= i} along W).

    Returns:
        Tensor: int64, the shape of ``x``. Among equal maxima the index farthest from the output position (the first
        met in the scan from the far end).
    """
    dim = _AXIS[direction]
    length = x.size(dim)
    shape = [1, 1, 1, 1]
    shape[dim] = length
    pos = torch.arange(length, device=x.device).view(shape).expand_as(x)
    with torch.no_grad():
        xd = x.detach()
        if _SUFFIX[direction]:
            # running max in scan order (from index L-1): suffix max; record = strictly above the max after it
            run = xd.flip(dim).cummax(dim).values.flip(dim)
            after = torch.cat([run.narrow(dim, 1, length - 1), torch.full_like(run.narrow(dim, 0, 1), -torch.inf)],
                              dim)
            rec = xd > after
            rec.narrow(dim, length - 1, 1).fill_(True)
            cand = torch.where(rec, pos, torch.full_like(pos, length))
            return cand.flip(dim).cummin(dim).values.flip(dim)  # nearest record at or after i
        run = xd.cummax(dim).values
        before = torch.cat([torch.full_like(run.narrow(dim, 0, 1), -torch.inf), run.narrow(dim, 0, length - 1)], dim)
        rec = xd > before
        rec.narrow(dim, 0, 1).fill_(True)
        cand = torch.where(rec, pos, torch.full_like(pos, -1))
        return cand.cummax(dim).values  # nearest record at or before i


def directional_pool(x: Tensor, direction: str) -> Tensor:
    """Directional max pool (reference of :func:`mmkp.ops.directional_pool`)."""
    if x.numel() == 0:
        return x.clone()
    return x.gather(_AXIS[direction], directional_argmax(x, direction))


def corner_pool(a: Tensor, b: Tensor, corner: str) -> Tensor:
    """Fused corner pool (reference of :func:`mmkp.ops.corner_pool`): ``pool1(a) + pool2(b)``."""
    first, second = CORNER_DIRECTIONS[corner]
    return directional_pool(a, first) + directional_pool(b, second)


def _full_argmax_last(x: Tensor, dim: int) -> Tensor:
    """Arg-max along ``dim`` (keepdim) with ties to the largest index."""
    length = x.size(dim)
    with torch.no_grad():
        return (length - 1) - x.detach().flip(dim).argmax(dim, keepdim=True)


def center_pool(a: Tensor, b: Tensor) -> Tensor:
    """Fused center pool (reference of :func:`mmkp.ops.center_pool`).

    ``colmax(a)`` broadcast along H plus ``rowmax(b)`` broadcast along W, i.e.
    ``bottom(top(a)) + right(left(b))``. Gradients go to the arg-max of each column / row, ties to the largest
    index, as the composition of the original pools routes them.
    """
    if a.numel() == 0:
        return a + b
    col = a.gather(2, _full_argmax_last(a, 2))  # (N, C, 1, W)
    row = b.gather(3, _full_argmax_last(b, 3))  # (N, C, H, 1)
    return col + row


def saccade_taps(start: Tensor, side: Tensor, out_size: int, size: int) -> Tuple[Tensor, Tensor, Tensor, Tensor,
                                                                                   Tensor]:
    """Bilinear taps of the crop pixels along one axis (mirror of ``saccade_tap`` in csrc/common/mmkp_common.h).

    Neighbours are clamped to the window's pixels inside the image, ``[max(start, 0), min(start + side, size) - 1]``.

    Args:
        start (Tensor): (K, 1) float32 window start (original pixels).
        side (Tensor): (K, 1) float32 window side (original pixels).
        out_size (int): crop side in crop pixels.
        size (int): image size along the axis.

    Returns:
        tuple[Tensor]: ``i0, i1`` (K, out_size) int64 source indices, ``w0, w1`` (K, out_size) float32 weights
        (zero outside the image) and ``valid`` (K, out_size) bool.
    """
    o = torch.arange(out_size, device=start.device, dtype=torch.float32)
    u = start + (o + 0.5) * (side / out_size)
    valid = (u >= 0) & (u < size)
    lo = start.clamp(min=0)
    hi = ((start + side).clamp(max=size) - 1).floor().clamp(0, size - 1)  # last window pixel in the image
    src = torch.maximum(u - 0.5, lo)
    i0 = torch.minimum(src.floor(), hi).clamp(min=0)
    i1 = torch.minimum(i0 + 1, hi)
    w1 = src - i0
    w0 = 1 - w1
    zero = torch.zeros_like(w0)
    return (i0.long(), i1.long(), torch.where(valid, w0, zero), torch.where(valid, w1, zero), valid)


def saccade_crop(images: Tensor, image_inds: Tensor, windows: Tensor, out_size: int) -> Tensor:
    """Batched bilinear crops (reference of the ``mmkp::saccade_crop`` kernel).

    Args:
        images (Tensor): (N, C, H, W) floating images.
        image_inds (Tensor): (K,) int64 image of each crop.
        windows (Tensor): (K, 3) float32 ``[y0, x0, side]`` of each window in original pixels.
        out_size (int): crop side in crop pixels.

    Returns:
        Tensor: (K, C, out_size, out_size), the dtype of ``images``.
    """
    N, C, H, W = images.shape
    K = windows.size(0)
    if K == 0 or C == 0:
        return images.new_zeros((K, C, out_size, out_size))
    compute_dtype = torch.float32 if images.dtype in (torch.float16, torch.bfloat16) else images.dtype
    y0, x0, side = windows[:, 0:1], windows[:, 1:2], windows[:, 2:3]
    iy0, iy1, wy0, wy1, vy = saccade_taps(y0, side, out_size, H)
    ix0, ix1, wx0, wx1, vx = saccade_taps(x0, side, out_size, W)
    flat = images.reshape(N * C, H * W).to(compute_dtype)
    planes = (image_inds.view(K, 1) * C + torch.arange(C, device=images.device).view(1, C)).view(K, C, 1, 1)

    def tap(iy: Tensor, ix: Tensor) -> Tensor:
        lin = (iy.view(K, 1, out_size, 1) * W + ix.view(K, 1, 1, out_size))  # (K, 1, out, out)
        return flat[planes, lin]  # (K, C, out, out)

    def wgt(w: Tensor, axis: int) -> Tensor:
        w = w.to(compute_dtype)
        return w.view(K, 1, out_size, 1) if axis == 0 else w.view(K, 1, 1, out_size)

    a_y0, a_y1, a_x0, a_x1 = wgt(wy0, 0), wgt(wy1, 0), wgt(wx0, 1), wgt(wx1, 1)
    val = a_y0 * (a_x0 * tap(iy0, ix0) + a_x1 * tap(iy0, ix1)) + a_y1 * (a_x0 * tap(iy1, ix0) + a_x1 * tap(iy1, ix1))
    valid = (vy.view(K, 1, out_size, 1) & vx.view(K, 1, 1, out_size))
    val = torch.where(valid, val, torch.zeros_like(val))
    return val.to(images.dtype)
