"""Corner, cascade corner and center pooling modules against explicit compositions built from mmcv's CornerPool.

The compositions below follow the structure (and parameter names) of the originals -- CornerNet-Lite
``core/models/py_utils/utils.py::corner_pool``, Duankaiwen/CenterNet ``models/CenterNet-104.py::pool`` and
``pool_cross`` -- with plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` and ``mmcv.ops.CornerPool`` (cummax, exact for the
max). Their weights are randomised, converted with ``convert_original_state_dict`` and loaded strictly into the
mmkp modules, so the tests check the forward, the gradients and the checkpoint key mapping at once.
"""
import pytest
import torch
from mmcv.ops import CornerPool
from torch import nn

from mmkp.models.layers import CascadeCornerPoolModule, CenterPoolModule, CornerPoolModule
from mmkp.registry import MODELS

DIRS = {'top_left': ('top', 'left'), 'bottom_right': ('bottom', 'right')}


class Convolution(nn.Module):
    """conv-BN-ReLU with the original's attribute names."""

    def __init__(self, k, inp, out):
        super().__init__()
        self.conv = nn.Conv2d(inp, out, k, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class OriginalLayout(nn.Module):
    """The parts shared by the original corner_pool / pool / pool_cross."""

    def __init__(self, dim, mid):
        super().__init__()
        self.p1_conv1 = Convolution(3, dim, mid)
        self.p2_conv1 = Convolution(3, dim, mid)
        self.p_conv1 = nn.Conv2d(mid, dim, 3, padding=1, bias=False)
        self.p_bn1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.relu1 = nn.ReLU()
        self.conv2 = Convolution(3, dim, dim)

    def tail(self, x, pooled):
        return self.conv2(self.relu1(self.p_bn1(self.p_conv1(pooled)) + self.bn1(self.conv1(x))))


class OriginalCornerPool(OriginalLayout):

    def __init__(self, dim, mid, corner):
        super().__init__(dim, mid)
        self.pool1, self.pool2 = (CornerPool(d) for d in DIRS[corner])

    def forward(self, x):
        return self.tail(x, self.pool1(self.p1_conv1(x)) + self.pool2(self.p2_conv1(x)))


class OriginalCascadePool(OriginalLayout):

    def __init__(self, dim, mid, corner):
        super().__init__(dim, mid)
        self.pool1, self.pool2 = (CornerPool(d) for d in DIRS[corner])
        self.look_conv1 = Convolution(3, dim, mid)
        self.look_conv2 = Convolution(3, dim, mid)
        self.P1_look_conv = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.P2_look_conv = nn.Conv2d(mid, mid, 3, padding=1, bias=False)

    def forward(self, x):
        pool1 = self.pool1(self.P1_look_conv(self.p1_conv1(x) + self.pool2(self.look_conv1(x))))
        pool2 = self.pool2(self.P2_look_conv(self.p2_conv1(x) + self.pool1(self.look_conv2(x))))
        return self.tail(x, pool1 + pool2)


class OriginalPoolCross(OriginalLayout):

    def __init__(self, dim, mid):
        super().__init__(dim, mid)
        self.pool1, self.pool2, self.pool3, self.pool4 = (CornerPool(d) for d in ('top', 'left', 'bottom', 'right'))

    def forward(self, x):
        pool1 = self.pool3(self.pool1(self.p1_conv1(x)))
        pool2 = self.pool4(self.pool2(self.p2_conv1(x)))
        return self.tail(x, pool1 + pool2)


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith('running_var'):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.3)


def _pair(original, mmkp_module, seed):
    _randomise(original, seed)
    converted = type(mmkp_module).convert_original_state_dict(original.state_dict())
    mmkp_module.load_state_dict(converted, strict=True)  # every key maps, none is left over
    return original.double(), mmkp_module.double()


CASES = [
    ('corner_tl', lambda: OriginalCornerPool(8, 6, 'top_left'),
     lambda: CornerPoolModule(8, 6, corner='top_left')),
    ('corner_br', lambda: OriginalCornerPool(8, 6, 'bottom_right'),
     lambda: CornerPoolModule(8, 6, corner='bottom_right')),
    ('cascade_tl', lambda: OriginalCascadePool(8, 6, 'top_left'),
     lambda: CascadeCornerPoolModule(8, 6, corner='top_left')),
    ('cascade_br', lambda: OriginalCascadePool(8, 6, 'bottom_right'),
     lambda: CascadeCornerPoolModule(8, 6, corner='bottom_right')),
    ('center', lambda: OriginalPoolCross(8, 6), lambda: CenterPoolModule(8, 6)),
]


@pytest.mark.parametrize('name,make_original,make_mmkp', CASES, ids=[c[0] for c in CASES])
def test_matches_mmcv_composition(name, make_original, make_mmkp):
    original, module = _pair(make_original(), make_mmkp(), seed=len(name))
    x = torch.randn(2, 8, 11, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # eval: running statistics
    original.eval(), module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), original(x), rtol=1e-10, atol=1e-10)
    # train: batch statistics, and gradients w.r.t. the input and every parameter
    original.train(), module.train()
    grad_out = torch.randn(2, 8, 11, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    results = []
    for m in (original, module):
        xi = x.clone().requires_grad_()
        out = m(xi)
        params = dict(m.named_parameters())
        grads = torch.autograd.grad(out, [xi] + list(params.values()), grad_out)
        results.append((out, grads[0], dict(zip(params, grads[1:]))))
    (out_o, gx_o, gp_o), (out_m, gx_m, gp_m) = results
    torch.testing.assert_close(out_m, out_o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx_m, gx_o, rtol=1e-8, atol=1e-8)
    converted = type(module).convert_original_state_dict(gp_o)
    assert converted.keys() == gp_m.keys()
    for key, g in gp_m.items():
        torch.testing.assert_close(g, converted[key], rtol=1e-8, atol=1e-8, msg=key)


def test_registry_and_config():
    for type_name, cls in [('CornerPoolModule', CornerPoolModule), ('CascadeCornerPoolModule', CascadeCornerPoolModule),
                           ('CenterPoolModule', CenterPoolModule)]:
        assert MODELS.get(type_name) is cls
        assert cls.__module__.startswith('mmkp.')
    m = MODELS.build(dict(type='CornerPoolModule', in_channels=16, pool_channels=8, corner='bottom_right'))
    assert m(torch.randn(1, 16, 5, 7)).shape == (1, 16, 5, 7)
    assert m.corner == 'bottom_right'


def test_original_parameter_counts():
    # DETECTORS.md 6.2: 4.85 M parameters for the two TL cascade modules of CenterNet-104 (dim 256, 128 channels)
    n = sum(p.numel() for p in CascadeCornerPoolModule().parameters())
    assert n * 2 == sum(p.numel() for p in OriginalCascadePool(256, 128, 'top_left').parameters()) * 2
    assert round(2 * n / 1e6, 2) == 4.85
    assert sum(p.numel() for p in CornerPoolModule().parameters()) == sum(
        p.numel() for p in OriginalCornerPool(256, 128, 'top_left').parameters())


def test_edge_batches():
    modules = (CornerPoolModule(4, 3), CascadeCornerPoolModule(4, 3, corner='bottom_right'), CenterPoolModule(4, 3))
    for module in modules:
        module.eval()
        assert module(torch.randn(0, 4, 6, 5)).shape == (0, 4, 6, 5)
        assert module(torch.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match='corner'):
        CornerPoolModule(corner='top_right')
    with pytest.raises(ValueError, match='corner'):
        CascadeCornerPoolModule(corner='left')
    with pytest.raises(ValueError, match='in_channels'):
        CenterPoolModule(in_channels=0)
