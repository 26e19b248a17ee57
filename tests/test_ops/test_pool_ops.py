"""Directional, fused corner and fused center pools: values, the original tie rule, gradients, layouts, edge shapes."""
import itertools

import pytest
import torch
from mmcv.ops import CornerPool

from mmkp.ops import CORNERS, DIRECTIONS, center_pool, corner_pool, directional_pool
from mmkp.ops import reference as ref

# the compiled kernels must be there (tests/test_ops/conftest.py): without them these tests fail, not skip
pytestmark = pytest.mark.usefixtures('compiled_ext')

AXIS = {'top': 2, 'bottom': 2, 'left': 3, 'right': 3}


def original_pool(x, direction):
    """Independent oracle: the original C++ forward/backward scan, one line at a time (CornerNet-Lite
    ``_cpools/src/*_pool.cpp``): scan from the far end, replace the running max only on a strictly greater value.

    Returns (output, argmax) with argmax[..., i] the index along the axis that output i takes its value from.
    """
    dim = AXIS[direction]
    xt = x.movedim(dim, -1)
    length = xt.shape[-1]
    order = range(length - 1, -1, -1) if direction in ('top', 'left') else range(length)
    out = torch.empty_like(xt)
    arg = torch.empty(xt.shape, dtype=torch.long)
    for line in itertools.product(*[range(s) for s in xt.shape[:-1]]):
        best, best_i = None, None
        for i in order:
            v = xt[line + (i, )].item()
            if best is None or v > best:
                best, best_i = v, i
            out[line + (i, )] = best
            arg[line + (i, )] = best_i
    return out.movedim(-1, dim), arg.movedim(-1, dim)


def original_grad(x, direction, grad_out):
    """Gradient of the original backward: each output gradient scatter-added at its arg-max."""
    dim = AXIS[direction]
    _, arg = original_pool(x, direction)
    return torch.zeros_like(x).scatter_add_(dim, arg, grad_out)


def tie_heavy(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, shape, generator=g).to(dtype)


def distinct(shape, dtype=torch.float64, seed=0):
    """Values without ties (a permutation), safe for gradcheck."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n, generator=g).to(dtype) / n).reshape(shape)


def grads(fn, inputs, grad_out):
    inputs = [t.detach().requires_grad_() for t in inputs]  # keeps the strides
    out = fn(*inputs)
    return out, torch.autograd.grad(out, inputs, grad_out)


# ------------------------------------------------------------------------------------------------------------------
# forward values


@pytest.mark.parametrize('direction', DIRECTIONS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_directional_forward_exact(direction, dtype):
    x = torch.randn(2, 5, 19, 23, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = directional_pool(x, direction)
    assert out.dtype == dtype and out.shape == x.shape and out.is_contiguous()
    assert torch.equal(out, ref.directional_pool(x, direction))
    assert torch.equal(out, CornerPool(direction)(x))  # mmcv's cummax forward: max is exact
    # semantics spelled out: top = suffix max along H, bottom = prefix max along H, left/right along W
    dim = AXIS[direction]
    if direction in ('top', 'left'):
        expected = x.flip(dim).cummax(dim).values.flip(dim)
    else:
        expected = x.cummax(dim).values
    assert torch.equal(out, expected)


@pytest.mark.parametrize('corner', CORNERS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_corner_pool_equals_composition(corner, dtype):
    g = torch.Generator().manual_seed(2)
    a, b = (torch.randn(2, 4, 17, 29, generator=g).to(dtype) for _ in range(2))
    first, second = ref.CORNER_DIRECTIONS[corner]
    out = corner_pool(a, b, corner)
    assert torch.equal(out, directional_pool(a, first) + directional_pool(b, second))
    assert torch.equal(out, ref.corner_pool(a, b, corner))
    assert torch.equal(out, CornerPool(first)(a) + CornerPool(second)(b))
    # gradients of the fused op are those of the two directional pools
    grad_out = torch.randn(a.shape, generator=g).to(dtype)
    _, (ga, gb) = grads(lambda p, q: corner_pool(p, q, corner), (a, b), grad_out)
    _, (ga2, ) = grads(lambda p: directional_pool(p, first), (a, ), grad_out)
    _, (gb2, ) = grads(lambda q: directional_pool(q, second), (b, ), grad_out)
    assert torch.equal(ga, ga2) and torch.equal(gb, gb2)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_center_pool_equals_composition(dtype):
    g = torch.Generator().manual_seed(3)
    a, b = (torch.randn(3, 2, 21, 18, generator=g).to(dtype) for _ in range(2))
    out = center_pool(a, b)
    composed = directional_pool(directional_pool(a, 'top'), 'bottom') + directional_pool(
        directional_pool(b, 'left'), 'right')
    assert torch.equal(out, composed)
    assert torch.equal(out, ref.center_pool(a, b))
    assert torch.equal(out, a.amax(2, keepdim=True) + b.amax(3, keepdim=True))
    assert torch.equal(out, CornerPool('bottom')(CornerPool('top')(a)) + CornerPool('right')(CornerPool('left')(b)))


def test_center_pool_grads_equal_composition_with_ties():
    # integer values and gradients: sums are exact, so the routing (ties included) must match exactly
    a, b = tie_heavy((2, 3, 9, 11), seed=4), tie_heavy((2, 3, 9, 11), seed=5)
    grad_out = tie_heavy((2, 3, 9, 11), seed=6) - 1

    def composed(p, q):
        return directional_pool(directional_pool(p, 'top'), 'bottom') + directional_pool(
            directional_pool(q, 'left'), 'right')

    _, (ga, gb) = grads(center_pool, (a, b), grad_out)
    _, (ga2, gb2) = grads(composed, (a, b), grad_out)
    assert torch.equal(ga, ga2) and torch.equal(gb, gb2)
    _, (ga3, gb3) = grads(ref.center_pool, (a, b), grad_out)
    assert torch.equal(ga, ga3) and torch.equal(gb, gb3)
    # each column / row sends its whole gradient sum to one element: its last (largest-index) maximum
    col_arg = (a.size(2) - 1) - a.flip(2).argmax(2, keepdim=True)
    expected_a = torch.zeros_like(a).scatter_(2, col_arg, grad_out.sum(2, keepdim=True))
    row_arg = (b.size(3) - 1) - b.flip(3).argmax(3, keepdim=True)
    expected_b = torch.zeros_like(b).scatter_(3, row_arg, grad_out.sum(3, keepdim=True))
    assert torch.equal(ga, expected_a) and torch.equal(gb, expected_b)


# ------------------------------------------------------------------------------------------------------------------
# the original tie rule


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_tie_rule_explicit(direction):
    line = torch.tensor([1., 3., 3., 2., 3., 0.], dtype=torch.float64)
    shape = [1, 1, 1, 1]
    shape[AXIS[direction]] = line.numel()
    x = line.view(shape)
    g = torch.arange(1., 7., dtype=torch.float64).view(shape)  # distinguishable per-output gradients
    out, (gx, ) = grads(lambda t: directional_pool(t, direction), (x, ), g)
    flat = gx.flatten().tolist()
    if direction in ('top', 'left'):
        # suffix max [3,3,3,3,3,0]; scanning from index 5 upward, index 4 holds 3 first and wins every tie
        assert out.flatten().tolist() == [3, 3, 3, 3, 3, 0]
        assert flat == [0, 0, 0, 0, 1 + 2 + 3 + 4 + 5, 6]
    else:
        # prefix max [1,3,3,3,3,3]; scanning from index 0, index 1 holds 3 first and wins every tie
        assert out.flatten().tolist() == [1, 3, 3, 3, 3, 3]
        assert flat == [1, 2 + 3 + 4 + 5 + 6, 0, 0, 0, 0]
    # torch.cummax (mmcv's CornerPool) routes ties to the nearest element instead -- a different gradient
    _, (gm, ) = grads(CornerPool(direction), (x, ), g)
    assert not torch.equal(gm, gx)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_tie_rule_matches_original_scan(direction):
    x = tie_heavy((2, 2, 7, 9), seed=7)
    grad_out = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    expected_out, _ = original_pool(x, direction)
    expected_grad = original_grad(x, direction, grad_out)
    out, (gx, ) = grads(lambda t: directional_pool(t, direction), (x, ), grad_out)
    assert torch.equal(out, expected_out)
    torch.testing.assert_close(gx, expected_grad, rtol=1e-12, atol=1e-12)
    _, (gr, ) = grads(lambda t: ref.directional_pool(t, direction), (x, ), grad_out)
    torch.testing.assert_close(gr, expected_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('corner', CORNERS)
def test_corner_pool_tie_rule(corner):
    first, second = ref.CORNER_DIRECTIONS[corner]
    a, b = tie_heavy((2, 3, 6, 10), seed=9), tie_heavy((2, 3, 6, 10), seed=10)
    grad_out = tie_heavy((2, 3, 6, 10), seed=11)
    _, (ga, gb) = grads(lambda p, q: corner_pool(p, q, corner), (a, b), grad_out)
    assert torch.equal(ga, original_grad(a, first, grad_out))
    assert torch.equal(gb, original_grad(b, second, grad_out))


# ------------------------------------------------------------------------------------------------------------------
# gradcheck (float64, inputs without ties)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_gradcheck_directional(direction):
    x = distinct((2, 2, 5, 6), seed=12).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: directional_pool(t, direction), (x, ))


@pytest.mark.parametrize('corner', CORNERS)
def test_gradcheck_corner(corner):
    a = distinct((2, 2, 5, 6), seed=13).requires_grad_()
    b = distinct((2, 2, 5, 6), seed=14).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, q: corner_pool(p, q, corner), (a, b))


def test_gradcheck_center():
    a = distinct((2, 2, 5, 6), seed=15).requires_grad_()
    b = distinct((2, 2, 5, 6), seed=16).requires_grad_()
    assert torch.autograd.gradcheck(center_pool, (a, b))


# ------------------------------------------------------------------------------------------------------------------
# layouts, edge shapes, dtypes


def _layouts(x):
    """The same values as x under other strides."""
    yield x.contiguous(memory_format=torch.channels_last)
    yield x.transpose(2, 3).contiguous().transpose(2, 3)  # H and W strides swapped
    big = torch.zeros(x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 3, dtype=x.dtype)
    big[:, :, ::2, ::3] = x
    yield big[:, :, ::2, ::3]  # gaps between elements
    yield x.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(17)
    a, b = tie_heavy((2, 3, 6, 7), seed=18), torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    grad_out = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    cases = [(lambda p, q, d=d: directional_pool(p, d) + 0 * q) for d in DIRECTIONS]
    cases += [(lambda p, q, c=c: corner_pool(p, q, c)) for c in CORNERS] + [center_pool]
    for fn in cases:
        out, (ga, gb) = grads(fn, (a, b), grad_out)
        for pa, pb in zip(_layouts(a), _layouts(b)):
            assert not pa.is_contiguous() and not pb.is_contiguous()
            out2, (ga2, gb2) = grads(fn, (pa, pb), grad_out.transpose(2, 3).contiguous().transpose(2, 3))
            assert torch.equal(out2, out) and torch.equal(ga2, ga) and torch.equal(gb2, gb)


@pytest.mark.parametrize('shape', [(1, 1, 1, 1), (1, 1, 1, 7), (1, 1, 7, 1), (3, 2, 1, 1), (1, 1, 9, 8),
                                   (1, 1, 8, 9), (2, 1, 16, 17), (0, 3, 5, 6), (2, 0, 5, 6)])
def test_edge_shapes(shape):
    a, b = tie_heavy(shape, seed=19), tie_heavy(shape, seed=20)
    grad_out = tie_heavy(shape, seed=21) - 1
    for direction in DIRECTIONS:
        out, (ga, ) = grads(lambda t: directional_pool(t, direction), (a, ), grad_out)
        out_r, (ga_r, ) = grads(lambda t: ref.directional_pool(t, direction), (a, ), grad_out)
        assert out.shape == torch.Size(shape) and ga.shape == torch.Size(shape)
        assert torch.equal(out, out_r) and torch.equal(ga, ga_r)
    for corner in CORNERS:
        out, gs = grads(lambda p, q: corner_pool(p, q, corner), (a, b), grad_out)
        out_r, gs_r = grads(lambda p, q: ref.corner_pool(p, q, corner), (a, b), grad_out)
        assert torch.equal(out, out_r) and all(torch.equal(u, v) for u, v in zip(gs, gs_r))
    out, gs = grads(center_pool, (a, b), grad_out)
    out_r, gs_r = grads(ref.center_pool, (a, b), grad_out)
    assert out.shape == torch.Size(shape)
    assert torch.equal(out, out_r) and all(torch.equal(u, v) for u, v in zip(gs, gs_r))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cpu_half_precision(dtype):
    a, b = torch.randn(2, 3, 10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(22)).unbind(0)
    a, b = a[None].to(dtype), b[None].to(dtype)
    for direction in DIRECTIONS:
        assert torch.equal(directional_pool(a, direction), ref.directional_pool(a, direction))
    for corner in CORNERS:
        assert torch.equal(corner_pool(a, b, corner), ref.corner_pool(a, b, corner))
    assert torch.equal(center_pool(a, b), ref.center_pool(a, b))


# ------------------------------------------------------------------------------------------------------------------
# registration (schema, fake kernels, autograd) and argument errors


# schema, fake (meta) kernels and autograd registration; opcheck's torch.compile check is left out (slow)
OPCHECKS = ('test_schema', 'test_autograd_registration', 'test_faketensor')


def test_opcheck():
    x = distinct((2, 2, 5, 6), dtype=torch.float32, seed=23).requires_grad_()
    y = distinct((2, 2, 5, 6), dtype=torch.float32, seed=24).requires_grad_()
    g = torch.randn(2, 2, 5, 6)
    for direction in DIRECTIONS:
        torch.library.opcheck(torch.ops.mmkp.directional_pool.default, (x, direction), test_utils=OPCHECKS)
    torch.library.opcheck(torch.ops.mmkp.directional_pool_backward.default, (g, x.detach(), 'top'),
                          test_utils=OPCHECKS)
    for corner in CORNERS:
        torch.library.opcheck(torch.ops.mmkp.corner_pool.default, (x, y, corner), test_utils=OPCHECKS)
    torch.library.opcheck(torch.ops.mmkp.corner_pool_backward.default, (g, x.detach(), y.detach(), 'top_left'),
                          test_utils=OPCHECKS)
    torch.library.opcheck(torch.ops.mmkp.center_pool.default, (x, y), test_utils=OPCHECKS)
    torch.library.opcheck(torch.ops.mmkp.center_pool_backward.default, (g, x.detach(), y.detach()),
                          test_utils=OPCHECKS)
    # fake kernels give shapes without running the kernels
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        fa = mode.from_tensor(torch.empty(3, 4, 7, 9))
        assert torch.ops.mmkp.corner_pool(fa, fa, 'top_left').shape == (3, 4, 7, 9)
        assert torch.ops.mmkp.center_pool_backward(fa, fa, fa)[1].shape == (3, 4, 7, 9)


def test_argument_errors():
    x = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match='x must be a 4-d'):
        directional_pool(x[0], 'top')
    with pytest.raises(ValueError, match='direction'):
        directional_pool(x, 'up')
    with pytest.raises(TypeError, match='x must be a floating'):
        directional_pool(x.long(), 'top')
    with pytest.raises(TypeError, match='x must be a torch.Tensor'):
        directional_pool(x.numpy(), 'top')
    with pytest.raises(ValueError, match='corner'):
        corner_pool(x, x, 'top_right')
    with pytest.raises(ValueError, match='same shape'):
        corner_pool(x, x[:, :, :2], 'top_left')
    with pytest.raises(TypeError, match='same dtype'):
        center_pool(x, x.double())
    with pytest.raises(TypeError, match='b must be a floating'):
        center_pool(x, x.int())
    with pytest.raises(ValueError, match='a must be a 4-d'):
        center_pool(x[0], x[0])
    # the C++ ops check as well when called directly
    with pytest.raises(ValueError, match='direction'):
        torch.ops.mmkp.directional_pool(x, 'diagonal')
    with pytest.raises(ValueError, match='same shape'):
        torch.ops.mmkp.center_pool(x, x[:, :1])


# ------------------------------------------------------------------------------------------------------------------
# CUDA against CPU (all dtypes); skipped without a GPU (conftest.py)

CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def _cuda_vs_cpu(fn, inputs, grad_out):
    out_cpu, g_cpu = grads(fn, inputs, grad_out)
    out_cuda, g_cuda = grads(fn, [t.cuda() for t in inputs], grad_out.cuda())
    assert out_cuda.is_cuda
    assert torch.equal(out_cuda.cpu(), out_cpu)
    for u, v in zip(g_cuda, g_cpu):
        assert torch.equal(u.cpu(), v)


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', CUDA_DTYPES)
@pytest.mark.parametrize('shape', [(2, 3, 37, 45), (1, 2, 1, 70), (1, 1, 65, 1), (2, 2, 5, 32)])
def test_cuda_matches_cpu(dtype, shape):
    # small integer values and gradients: every sum is exact in every dtype, so CUDA must equal CPU bit for bit,
    # ties (many) included; W > 32 and W = 70 cross the warp chunks of the row kernels
    a, b = tie_heavy(shape, dtype, seed=25), tie_heavy(shape, dtype, seed=26)
    grad_out = tie_heavy(shape, dtype, seed=27) - 1
    for direction in DIRECTIONS:
        _cuda_vs_cpu(lambda t: directional_pool(t, direction), (a, ), grad_out)
    for corner in CORNERS:
        _cuda_vs_cpu(lambda p, q: corner_pool(p, q, corner), (a, b), grad_out)
    _cuda_vs_cpu(center_pool, (a, b), grad_out)


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', CUDA_DTYPES)
def test_cuda_random_values(dtype):
    g = torch.Generator().manual_seed(28)
    a, b, grad_out = (torch.randn(2, 4, 40, 67, generator=g).to(dtype) for _ in range(3))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype in (torch.float32, torch.float64) else dict(rtol=2e-2, atol=2e-2)
    for fn, args in [(lambda p, q: directional_pool(p, 'left') + 0 * q, (a, b)),
                     (lambda p, q: corner_pool(p, q, 'top_left'), (a, b)),
                     (lambda p, q: corner_pool(p, q, 'bottom_right'), (a, b)), (center_pool, (a, b))]:
        out_cpu, g_cpu = grads(fn, args, grad_out)
        out_cuda, g_cuda = grads(fn, [t.cuda() for t in args], grad_out.cuda())
        assert torch.equal(out_cuda.cpu(), out_cpu)  # max and one addition: exact
        for u, v in zip(g_cuda, g_cpu):
            torch.testing.assert_close(u.cpu(), v, **tol)  # sums in another order


@pytest.mark.cuda
def test_cuda_empty_and_non_contiguous():
    x = torch.randn(0, 3, 5, 6, device='cuda')
    assert directional_pool(x, 'top').shape == x.shape
    assert center_pool(x, x).shape == x.shape
    y = torch.randn(2, 3, 6, 5, device='cuda').transpose(2, 3)
    assert torch.equal(corner_pool(y, y, 'top_left').cpu(), corner_pool(y.cpu(), y.cpu(), 'top_left'))
