"""Without ``mmkp._ext`` the pure-PyTorch references serve, with exactly one warning, and give the compiled results.

The missing extension is simulated (monkeypatched or blocked in a subprocess); the comparison with the compiled
kernels needs the real extension (``compiled_ext``, tests/test_ops/conftest.py) and fails without it.
"""
import os.path as osp
import subprocess
import sys
import warnings

import pytest
import torch

import mmkp.ops as ops
from mmkp.ops import ext_loader

MMKP_DIR = osp.dirname(osp.dirname(osp.abspath(ops.__file__)))


@pytest.fixture
def without_ext(monkeypatch):
    monkeypatch.setattr(ext_loader, '_EXT', None)
    monkeypatch.setattr(ext_loader, '_EXT_ERROR', ImportError('simulated: no mmkp._ext'))
    monkeypatch.setattr(ext_loader, '_WARNED', set())


def _run_all(a, b, images):
    outs = [ops.directional_pool(a, d) for d in ops.DIRECTIONS]
    outs += [ops.corner_pool(a, b, c) for c in ops.CORNERS]
    outs.append(ops.center_pool(a, b))
    outs.append(ops.saccade_crop(images, torch.tensor([[5., 6.], [2., 9.]]), torch.tensor([1.5, 0.7]), 7,
                                 torch.tensor([1, 0]))[0])
    return outs


def _inputs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, 8, 9, generator=g), torch.randn(2, 3, 8, 9, generator=g)
    return a, b, torch.randn(2, 3, 12, 13, generator=g)


def test_reference_serves_with_one_warning(without_ext):
    a, b, images = _inputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        fallback = _run_all(a, b, images)
        fallback_again = _run_all(a, b, images)
    messages = [str(w.message) for w in caught if 'mmkp._ext could not be imported' in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    assert 'simulated: no mmkp._ext' in messages[0]
    for u, v in zip(fallback, fallback_again):
        assert torch.equal(u, v)


def test_reference_gives_the_compiled_results(compiled_ext, monkeypatch):
    a, b, images = _inputs()
    assert ops.ext_loaded()
    compiled = _run_all(a, b, images)
    monkeypatch.setattr(ext_loader, '_EXT', None)
    monkeypatch.setattr(ext_loader, '_EXT_ERROR', ImportError('simulated: no mmkp._ext'))
    monkeypatch.setattr(ext_loader, '_WARNED', set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        fallback = _run_all(a, b, images)
    assert any('mmkp._ext could not be imported' in str(w.message) for w in caught)  # the reference did serve
    assert len(fallback) == len(compiled) == len(ops.DIRECTIONS) + len(ops.CORNERS) + 2
    for u, v in zip(fallback, compiled):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-6)


def test_reference_gradients_follow_the_tie_rule(without_ext):
    x = torch.tensor([1., 3., 3., 2., 3., 0.], dtype=torch.float64).view(1, 1, 6, 1).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ops.directional_pool(x, 'top').sum().backward()
    assert x.grad.flatten().tolist() == [0, 0, 0, 0, 5, 1]


def test_import_without_extension_warns_once():
    # a fresh interpreter where `import mmkp._ext` fails; the parent package is stubbed so that only mmkp.ops (and
    # not mmdet, through mmkp/__init__.py) is imported
    code = '\n'.join([
        'import sys, types, warnings',
        "pkg = types.ModuleType('mmkp')",
        f'pkg.__path__ = [{MMKP_DIR!r}]',
        "sys.modules['mmkp'] = pkg",
        "sys.modules['mmkp._ext'] = None",
        'import torch',
        'with warnings.catch_warnings(record=True) as caught:',
        "    warnings.simplefilter('always')",
        '    import mmkp.ops as ops',
        '    x = torch.randn(1, 2, 5, 6)',
        '    for _ in range(3):',
        "        ops.corner_pool(x, x, 'top_left'); ops.center_pool(x, x); ops.directional_pool(x, 'left')",
        "print(sum('mmkp._ext could not be imported' in str(w.message) for w in caught), ops.ext_loaded())",
    ])
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ['1', 'False'], proc.stdout + proc.stderr[-3000:]
