"""Directional, fused corner and fused center max pooling (CornerNet, CornerNet-Lite, CenterNet keypoint triplets).

Semantics (princeton-vl/CornerNet-Lite@6a54505 ``core/models/py_utils/_cpools/src/{top,bottom,left,right}_pool.cpp``,
Duankaiwen/CenterNet@3ad3a10 ``models/py_utils/_cpools/src/*.cpp``), for a (N, C, H, W) map ``x``:

=========  ===================================  ===========================
direction  output[..., i] along the axis          looks
=========  ===================================  ===========================
top        max_{j >= i} x[j] along H (suffix)    down (TL corner, center)
bottom     max_{j <= i} x[j] along H (prefix)    up (BR corner)
left       max_{j >= i} x[j] along W (suffix)    right (TL corner)
right      max_{j <= i} x[j] along W (prefix)    left (BR corner)
=========  ===================================  ===========================

Backward tie rule (the original C++ backward): each output gradient goes to one arg-max element, found by scanning
from the far end of the window (index L-1 for top/left, 0 for bottom/right) and replacing the running maximum only
on a strictly greater value. Among equal values the one farthest from the output position wins, e.g. for a top pool
the largest row index. (``torch.cummax`` -- and so ``mmcv.ops.CornerPool`` -- routes ties to the nearest element.)
NaN inputs are not supported (their handling is unspecified).

Every function runs the compiled ``torch.ops.mmkp`` kernels (CPU: float32, float64, float16, bfloat16; CUDA:
float32, float16, bfloat16, float64) when ``mmkp._ext`` is built, else the references of
:mod:`mmkp.ops.reference` (one warning). Inputs of any strides are accepted (made contiguous inside); outputs are
contiguous. First-order gradients only (no double backward through the compiled kernels).
"""
from typing import Tuple

import torch
from torch import Tensor

from . import reference
from .ext_loader import ext_loaded, use_compiled

DIRECTIONS = ('top', 'bottom', 'left', 'right')
CORNERS = ('top_left', 'bottom_right')


def _check_map(x: object, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'{name} must be a 4-d (N, C, H, W) tensor, got shape {tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'{name} must be a floating tensor, got dtype {x.dtype}')


def _check_pair(a: object, b: object) -> None:
    _check_map(a, 'a')
    _check_map(b, 'b')
    if a.shape != b.shape:
        raise ValueError(f'a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}')
    if a.dtype != b.dtype:
        raise TypeError(f'a and b must have the same dtype, got {a.dtype} and {b.dtype}')
    if a.device != b.device:
        raise ValueError(f'a and b must be on the same device, got {a.device} and {b.device}')


def _check_choice(value: object, name: str, choices: Tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')


def directional_pool(x: Tensor, direction: str) -> Tensor:
    """Directional max pool (TopPool / BottomPool / LeftPool / RightPool of CornerNet).

    Args:
        x (Tensor): (N, C, H, W) floating map; any strides; N = 0 allowed.
        direction (str): ``'top'`` (suffix max along H: each output looks down), ``'bottom'`` (prefix max along H),
            ``'left'`` (suffix max along W: looks right) or ``'right'`` (prefix max along W).

    Returns:
        Tensor: (N, C, H, W), same dtype and device, contiguous. Gradient: each output gradient goes to its arg-max,
        ties to the element farthest from the output (module docstring).

    Raises:
        TypeError: ``x`` is not a floating tensor.
        ValueError: ``x`` is not 4-d, or ``direction`` is not one of the four names.
    """
    _check_map(x, 'x')
    _check_choice(direction, 'direction', DIRECTIONS)
    if use_compiled(x):
        return torch.ops.mmkp.directional_pool(x, direction)
    return reference.directional_pool(x, direction)


def corner_pool(a: Tensor, b: Tensor, corner: str = 'top_left') -> Tensor:
    """Fused corner pool: two directional pools and their sum in one pass per input.

    ``'top_left'``: ``top(a) + left(b)``; ``'bottom_right'``: ``bottom(a) + right(b)`` (CornerNet-Lite
    ``core/models/py_utils/utils.py::corner_pool`` with ``TopPool, LeftPool`` / ``BottomPool, RightPool``).

    Args:
        a (Tensor): (N, C, H, W) floating map pooled along H.
        b (Tensor): (N, C, H, W) map pooled along W; same shape, dtype and device as ``a``.
        corner (str): ``'top_left'`` or ``'bottom_right'``. Defaults to ``'top_left'``.

    Returns:
        Tensor: (N, C, H, W), contiguous. Gradients as :func:`directional_pool` for each input.

    Raises:
        TypeError: non-floating inputs or different dtypes.
        ValueError: not 4-d, different shapes or devices, or an unknown ``corner``.
    """
    _check_pair(a, b)
    _check_choice(corner, 'corner', CORNERS)
    if use_compiled(a):
        return torch.ops.mmkp.corner_pool(a, b, corner)
    return reference.corner_pool(a, b, corner)


def center_pool(a: Tensor, b: Tensor) -> Tensor:
    """Fused center pool: column max of ``a`` plus row max of ``b``.

    ``bottom(top(a)) + right(left(b))`` of CenterNet (Duankaiwen/CenterNet ``models/CenterNet-104.py::pool_cross``),
    computed as one reduction per column and per row: out[n, c, h, w] = max_h' a[n, c, h', w] + max_w' b[n, c, h, w'].

    Args:
        a (Tensor): (N, C, H, W) floating map reduced along H.
        b (Tensor): (N, C, H, W) map reduced along W; same shape, dtype and device as ``a``.

    Returns:
        Tensor: (N, C, H, W), contiguous. Gradient: the sum of the output gradients of a column goes to the arg-max
        of that column of ``a``, of a row to the arg-max of that row of ``b``; ties to the largest index (the first
        met scanning from index H-1 / W-1, as the original top-then-bottom / left-then-right pools route them).

    Raises:
        TypeError: non-floating inputs or different dtypes.
        ValueError: not 4-d, or different shapes or devices.
    """
    _check_pair(a, b)
    if use_compiled(a):
        return torch.ops.mmkp.center_pool(a, b)
    return reference.center_pool(a, b)


# ---------------------------------------------------------------------------------------------------------------
# Autograd and fake (meta) kernels of the compiled ops.


def _contiguous_like(x: Tensor) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _register() -> None:
    lib = torch.library

    @lib.register_fake('mmkp::directional_pool')
    def _directional_fake(x, direction):
        return _contiguous_like(x)

    @lib.register_fake('mmkp::directional_pool_backward')
    def _directional_bwd_fake(grad_out, x, direction):
        return _contiguous_like(x)

    @lib.register_fake('mmkp::corner_pool')
    def _corner_fake(a, b, corner):
        return _contiguous_like(a)

    @lib.register_fake('mmkp::corner_pool_backward')
    def _corner_bwd_fake(grad_out, a, b, corner):
        return _contiguous_like(a), _contiguous_like(b)

    @lib.register_fake('mmkp::center_pool')
    def _center_fake(a, b):
        return _contiguous_like(a)

    @lib.register_fake('mmkp::center_pool_backward')
    def _center_bwd_fake(grad_out, a, b):
        return _contiguous_like(a), _contiguous_like(b)

    def _directional_setup(ctx, inputs, output):
        x, direction = inputs
        ctx.save_for_backward(x)
        ctx.direction = direction

    def _directional_backward(ctx, grad):
        x, = ctx.saved_tensors
        return torch.ops.mmkp.directional_pool_backward(grad, x, ctx.direction), None

    def _corner_setup(ctx, inputs, output):
        a, b, corner = inputs
        ctx.save_for_backward(a, b)
        ctx.corner = corner

    def _corner_backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a, grad_b = torch.ops.mmkp.corner_pool_backward(grad, a, b, ctx.corner)
        return grad_a, grad_b, None

    def _center_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _center_backward(ctx, grad):
        a, b = ctx.saved_tensors
        return torch.ops.mmkp.center_pool_backward(grad, a, b)

    lib.register_autograd('mmkp::directional_pool', _directional_backward, setup_context=_directional_setup)
    lib.register_autograd('mmkp::corner_pool', _corner_backward, setup_context=_corner_setup)
    lib.register_autograd('mmkp::center_pool', _center_backward, setup_context=_center_setup)


if ext_loaded():
    _register()
