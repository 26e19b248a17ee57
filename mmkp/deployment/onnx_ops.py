"""The compiled pooling ops of :mod:`mmkp.ops` written in standard ONNX operators, swapped in only during export.

ONNX has no cumulative maximum, and ``torch.ops.mmkp.*`` would export as custom ops that plain ``onnxruntime``
cannot run. The forward values of the compiled kernels (princeton-vl/CornerNet-Lite@6a54505
``core/models/py_utils/_cpools/src/{top,bottom,left,right}_pool.cpp``, Duankaiwen/CenterNet@3ad3a10
``models/py_utils/_cpools/src/*.cpp``) are rebuilt here from ``Pad``, ``Slice``, ``Max``, ``ReduceMax`` and ``Add``:

- directional pool (a cumulative max along H or W) by doubling: after step ``k`` (``k = 0, 1, ...``) every
  position holds the maximum of the ``2^(k+1)`` positions starting at it in the pooled direction, via
  ``y = max(y, shift(y, 2^k))`` with ``-inf`` shifted in; ``ceil(log2(L))`` steps cover a length ``L``;
- center pool: ``ReduceMax`` over H of ``a`` (a (N, C, 1, W) row) plus ``ReduceMax`` over W of ``b`` (a
  (N, C, H, 1) column), broadcast to (N, C, H, W).

Maxima are exact, so the values equal the compiled kernels' bit for bit (only forward: export is inference).
The training path never sees these: :func:`onnx_pools` patches the names that
:mod:`mmkp.models.layers.pool_modules` calls for the duration of a ``with`` block and restores them after.
"""
import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from mmkp.ops.reference import CORNER_DIRECTIONS

#: direction -> (dim, suffix): suffix pools take the max of the positions at and after i (top / left)
_DIRECTIONS = {'top': (2, True), 'bottom': (2, False), 'left': (3, True), 'right': (3, False)}


def _shift(x: Tensor, dim: int, step: int, suffix: bool) -> Tensor:
    """``x`` moved by ``step`` positions along ``dim`` (2 or 3), ``-inf`` filling the vacated end.

    Suffix (``suffix=True``): out[i] = x[i + step]; prefix: out[i] = x[i - step]. Built as ``Pad`` + ``Slice``
    from one end, so no length enters the graph (any H, W in a dynamic export).
    """
    pad = [0, 0, 0, 0]  # F.pad order: (W left, W right, H top, H bottom)
    side = (0 if dim == 3 else 2) + (1 if suffix else 0)
    pad[side] = step
    padded = F.pad(x, pad, value=float('-inf'))
    if suffix:
        return padded[:, :, step:, :] if dim == 2 else padded[:, :, :, step:]
    return padded[:, :, :-step, :] if dim == 2 else padded[:, :, :, :-step]


def num_doubling_steps(length: int) -> int:
    """``ceil(log2(length))`` (0 for length <= 1): the shifted maxima a cumulative max over ``length`` needs."""
    return 0 if length <= 1 else int(math.ceil(math.log2(length)))


def onnx_directional_pool(x: Tensor, direction: str, min_length: int = 0) -> Tensor:
    """Directional max pool in standard ops (values of :func:`mmkp.ops.directional_pool`).

    Args:
        x (Tensor): (N, C, H, W) floating map.
        direction (str): ``'top'`` (suffix max along H), ``'bottom'`` (prefix max along H), ``'left'`` (suffix
            max along W) or ``'right'`` (prefix max along W).
        min_length (int): cover at least this length (a dynamic-shape export traces one size but must serve
            larger ones: extra steps shift in only ``-inf``, so they never change a value). Defaults to 0.

    Returns:
        Tensor: (N, C, H, W).

    Raises:
        ValueError: ``x`` not 4-d, or an unknown ``direction``.
    """
    if x.dim() != 4:
        raise ValueError(f'x must be a 4-d (N, C, H, W) tensor, got shape {tuple(x.shape)}')
    if direction not in _DIRECTIONS:
        raise ValueError(f'direction must be one of {tuple(_DIRECTIONS)}, got {direction!r}')
    dim, suffix = _DIRECTIONS[direction]
    out = x
    for k in range(num_doubling_steps(max(int(x.shape[dim]), min_length))):
        out = torch.maximum(out, _shift(out, dim, 2 ** k, suffix))
    return out


def onnx_corner_pool(a: Tensor, b: Tensor, corner: str = 'top_left', min_length: int = 0) -> Tensor:
    """Fused corner pool in standard ops: ``top(a) + left(b)`` or ``bottom(a) + right(b)``.

    Args:
        a, b (Tensor): (N, C, H, W) maps pooled along H and W.
        corner (str): ``'top_left'`` or ``'bottom_right'``. Defaults to ``'top_left'``.
        min_length (int): see :func:`onnx_directional_pool`. Defaults to 0.

    Returns:
        Tensor: (N, C, H, W).

    Raises:
        ValueError: unknown ``corner``.
    """
    if corner not in CORNER_DIRECTIONS:
        raise ValueError(f"corner must be 'top_left' or 'bottom_right', got {corner!r}")
    first, second = CORNER_DIRECTIONS[corner]
    return onnx_directional_pool(a, first, min_length) + onnx_directional_pool(b, second, min_length)


def onnx_center_pool(a: Tensor, b: Tensor) -> Tensor:
    """Fused center pool in standard ops: out[n, c, h, w] = max_h' a[n, c, h', w] + max_w' b[n, c, h, w'].

    Args:
        a, b (Tensor): (N, C, H, W) maps reduced along H and along W.

    Returns:
        Tensor: (N, C, H, W).
    """
    return a.amax(dim=2, keepdim=True) + b.amax(dim=3, keepdim=True)


@contextlib.contextmanager
def onnx_pools(min_length: int = 0) -> Iterator[None]:
    """Run the pooling modules on :func:`onnx_directional_pool` / :func:`onnx_corner_pool` / :func:`onnx_center_pool`.

    Patches ``directional_pool``, ``corner_pool`` and ``center_pool`` of :mod:`mmkp.models.layers.pool_modules`
    (the names :class:`CornerPoolModule`, :class:`CascadeCornerPoolModule` and :class:`CenterPoolModule` call) and
    restores them on exit, also on an error. Not thread-safe: other models built from the same module in another
    thread would see the standard-op versions meanwhile (same values, no gradient routing of the originals).

    Args:
        min_length (int): see :func:`onnx_directional_pool`. Defaults to 0.
    """
    from mmkp.models.layers import pool_modules
    saved = {name: getattr(pool_modules, name) for name in ('directional_pool', 'corner_pool', 'center_pool')}
    pool_modules.directional_pool = lambda x, direction: onnx_directional_pool(x, direction, min_length)
    pool_modules.corner_pool = lambda a, b, corner='top_left': onnx_corner_pool(a, b, corner, min_length)
    pool_modules.center_pool = onnx_center_pool
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(pool_modules, name, fn)
