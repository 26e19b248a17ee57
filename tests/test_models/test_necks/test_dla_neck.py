"""DLANeck (CenterNet DLA-34 up-sampling): released-checkpoint keys of backbone + neck, parameter count, data flow,
deformable-convolution wiring, bilinear up-sampling weights, shapes and gradients."""
import functools
import json
import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F

from mmkp.models.backbones import DLA
from mmkp.models.backbones.dla import ORIGINAL_KEY_RULES as BACKBONE_RULES
from mmkp.models.necks import DLANeck
from mmkp.models.necks.dla_neck import ORIGINAL_KEY_RULES as NECK_RULES
from mmkp.models.necks.dla_neck import DLAConvBlock, bilinear_kernel
from mmkp.registry import MODELS
from tests.conftest import ORIGINAL_CHECKPOINTS

DLA_CKPT = 'centernet_zhou_ctdet_coco_dla_2x'
HEAD_PREFIXES = ('hm.', 'wh.', 'reg.')
BUFFER_SUFFIXES = ('.running_mean', '.running_var', '.num_batches_tracked')
CHANNELS = (16, 32, 64, 128, 256, 512)


@functools.lru_cache(maxsize=1)
def _read_released(path):
    with open(path) as f:
        return json.load(f)


def _released():
    """The parsed key/shape list of ``ctdet_coco_dla_2x.pth``; a missing list fails the test (never a skip)."""
    path = osp.join(ORIGINAL_CHECKPOINTS, f'{DLA_CKPT}.json')
    if not osp.isfile(path):
        pytest.fail(f'{path} not found: put ../shared beside the checkout or set MMKP_REFERENCE_CHECKPOINTS')
    return _read_released(path)


def _first_match(key, rules):
    for pattern, repl in rules:
        if re.search(pattern, key):
            return True, None if repl is None else re.sub(pattern, repl, key, count=1)
    return False, key


def _levels(size, batch=1, seed=0):
    """Random backbone-like features of DLA-34 for an image of ``size`` x ``size``."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(batch, c, size // 2 ** i, size // 2 ** i, generator=gen) for i, c in enumerate(CHANNELS))


def test_registered_and_built_from_config():
    neck = MODELS.build(dict(type='DLANeck', in_channels=CHANNELS, first_level=2, last_level=5))
    assert type(neck) is DLANeck and MODELS.get('DLANeck') is DLANeck
    assert neck.out_channels == 64 and neck.use_dcn


@pytest.mark.parametrize('kwargs, match', [
    (dict(first_level=0), 'first_level must be in 1..4'),
    (dict(first_level=5), 'first_level must be in 1..4'),
    (dict(last_level=2), 'last_level must be in 3..6'),
    (dict(last_level=7), 'last_level must be in 3..6'),
])
def test_bad_levels_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DLANeck(use_dcn=False, **kwargs)


def test_released_backbone_and_neck_keys_map_one_to_one():
    """(a) every backbone/neck key of the released file maps by the rules onto a tensor of DLA + DLANeck of its
    shape (``base.fc`` dropped on purpose), and every tensor of ours is hit exactly once."""
    released = _released()
    shapes = {k: tuple(v) for k, v in released['state_dict'].items() if not k.startswith(HEAD_PREFIXES)}
    ours = {f'backbone.{k}': tuple(v.shape) for k, v in DLA().state_dict().items()}
    ours.update({f'neck.{k}': tuple(v.shape) for k, v in DLANeck().state_dict().items()})
    rules = BACKBONE_RULES + NECK_RULES
    hit, dropped = {}, []
    for key, shape in shapes.items():
        matched, target = _first_match(key, rules)
        assert matched, f'no rule for {key}'
        if target is None:
            dropped.append(key)
            continue
        assert target in ours, f'{key} -> {target}: no such tensor'
        assert ours[target] == shape, f'{key} {list(shape)} -> {target} {list(ours[target])}'
        assert target not in hit, f'{key} and {hit[target]} both map to {target}'
        hit[target] = key
    assert dropped == ['base.fc.weight', 'base.fc.bias']
    assert set(hit) == set(ours), sorted(set(ours) - set(hit))[:5]
    assert len(hit) == len(shapes) - 2 == 386  # backbone 234, neck 152: 16 conv blocks x 9 + 8 up-samplings
    offsets = [hit[k] for k in hit if '.conv_offset.' in k]
    assert len(offsets) == 2 * 16 and all('.conv_offset_mask.' in k for k in offsets)


def test_rules_drive_the_shared_converter():
    """The same rules, as a :class:`mmkp.converters.core.Layout`, pass the shared converter's strict checks."""
    released = _released()
    from mmkp.converters.core import Layout, StateDictConverter, target_shapes_from_model
    shapes = {k: v for k, v in released['state_dict'].items() if not k.startswith(HEAD_PREFIXES)}
    model = torch.nn.Module()
    model.backbone, model.neck = DLA(), DLANeck()
    layout = Layout(name='ctdet_coco_dla_2x.pth', original='xingyizhou/CenterNet@4c50fd3',
                    rules=BACKBONE_RULES + NECK_RULES)
    result = StateDictConverter(layout, target_shapes_from_model(model)).convert(shapes)
    assert result.dropped == ['base.fc.weight', 'base.fc.bias'] and not result.filled
    assert result.sources['neck.ida_up.node_2.conv.conv_offset.weight'] == 'ida_up.node_2.conv.conv_offset_mask.weight'


def test_parameter_count_equals_the_released_backbone_and_neck():
    """(b) DLA + DLANeck hold exactly the parameters of the released file less the heads and the unused
    ``base.fc``."""
    released = _released()
    def count(prefixes, exclude=()):
        return sum(torch.Size(v).numel() for k, v in released['state_dict'].items()
                   if k.startswith(prefixes) and not k.startswith(exclude) and not k.endswith(BUFFER_SUFFIXES))

    assert count(('', )) == released['num_params'] == 20_188_892
    neck = sum(p.numel() for p in DLANeck().parameters())
    backbone = sum(p.numel() for p in DLA().parameters())
    assert neck == count(('dla_up.', 'ida_up.')) == 3_940_336
    assert backbone + neck == count(('', ), exclude=HEAD_PREFIXES + ('base.fc.', )) == 19_211_168
    assert count(('base.fc.', )) == 513_000


def test_plain_conv_option_has_the_same_layout_without_offsets():
    dcn = DLANeck().state_dict()
    plain = DLANeck(use_dcn=False).state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in dcn.items() if '.conv_offset.' not in k}
    assert all(plain[k].abs().sum() == 0 for k in plain if k.endswith('conv.bias'))  # zero bias, as DCNv2


def test_missing_mmcv_ops_is_a_clear_import_error(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'mmcv.ops', None)
    with pytest.raises(ImportError, match='use_dcn=False'):
        DLANeck()
    DLANeck(use_dcn=False)


def test_forward_shape_is_a_stride_4_one_tuple():
    """(c) 128 x 128 image: DLA-34 levels in, (1, 64, 32, 32) out, a 1-tuple for CenterHeatmapHead."""
    torch.manual_seed(0)
    backbone, neck = DLA().eval(), DLANeck().eval()
    with torch.no_grad():
        out = neck(backbone(torch.rand(1, 3, 128, 128)))
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == (1, 64, 32, 32)
    assert torch.isfinite(out[0]).all() and (out[0] >= 0).all()  # ends in BN -> ReLU
    from mmkp.models.dense_heads import CenterHeatmapHead
    heat, size, offset = CenterHeatmapHead(num_classes=3, in_channels=neck.out_channels)(out)
    assert [tuple(heat[0].shape), tuple(size[0].shape), tuple(offset[0].shape)] == [
        (1, 3, 32, 32), (1, 2, 32, 32), (1, 2, 32, 32)]


def test_inputs_are_checked_and_left_unchanged():
    neck = DLANeck(use_dcn=False).eval()
    feats = _levels(64)
    copies = [f.clone() for f in feats]
    with torch.no_grad():
        neck(feats)
        with pytest.raises(ValueError, match='expects 6 backbone levels, got 5'):
            neck(feats[1:])
        bad = list(feats)
        bad[5] = torch.rand(1, 512, 3, 3)  # 2 x 2 expected: up-sampled to 6 x 6, the stride-16 level is 4 x 4
        with pytest.raises(ValueError, match=r'\(3, 3\) is up-sampled to \(6, 6\).*\(4, 4\).*multiples'):
            neck(bad)
    assert all(torch.equal(a, b) for a, b in zip(feats, copies))


def test_data_flow_follows_the_original_dla_up_and_ida_up():
    """The DLASeg neck of pose_dla_dcn.py written out for DLA-34 (l2..l5 the stride 4..32 levels)::

        ida_0: a5 = node_1(up_1(proj_1(l5)) + l4)
        ida_1: b4 = node_1(up_1(proj_1(l4)) + l3);  b5 = node_2(up_2(proj_2(a5)) + b4)
        ida_2: c3 = node_1(up_1(proj_1(l3)) + l2);  c4 = node_2(up_2(proj_2(b4)) + c3)
               c5 = node_3(up_3(proj_3(b5)) + c4)
        ida_up on (c5, b5, a5): y1 = node_1(up_1(proj_1(b5)) + c5);  out = node_2(up_2(proj_2(a5)) + y1)
    """
    torch.manual_seed(0)
    neck = DLANeck(use_dcn=False).eval()
    for m in neck.modules():  # every up-sampling different, BN not the identity
        if isinstance(m, torch.nn.ConvTranspose2d):
            m.weight.data.add_(0.1 * torch.randn_like(m.weight))
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.2)
    feats = _levels(64, batch=2)
    l2, l3, l4, l5 = feats[2:]

    def step(ida, k, low, skip):
        return getattr(ida, f'node_{k}')(getattr(ida, f'up_{k}')(getattr(ida, f'proj_{k}')(low)) + skip)

    up, ida = neck.dla_up, neck.ida_up
    with torch.no_grad():
        a5 = step(up.ida_0, 1, l5, l4)
        b4 = step(up.ida_1, 1, l4, l3)
        b5 = step(up.ida_1, 2, a5, b4)
        c3 = step(up.ida_2, 1, l3, l2)
        c4 = step(up.ida_2, 2, b4, c3)
        c5 = step(up.ida_2, 3, b5, c4)
        expected = step(ida, 2, a5, step(ida, 1, b5, c5))
        (got, ) = neck(feats)
    assert got.shape == (2, 64, 16, 16)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_gradients_reach_every_trainable_parameter():
    """(c) gradient flow through backbone and neck (DCN path) to every parameter that takes part."""
    torch.manual_seed(0)
    backbone, neck = DLA().train(), DLANeck().train()
    image = torch.rand(1, 3, 64, 64, requires_grad=True)
    (out, ) = neck(backbone(image))
    assert out.shape == (1, 64, 16, 16)
    (out * torch.rand_like(out)).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    for name, p in list(backbone.named_parameters()) + list(neck.named_parameters()):
        if not p.requires_grad:  # the two projections the original computes and discards
            assert name.startswith(('level3.project.', 'level4.project.')) and p.grad is None, name
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_zero_offset_dcn_is_a_plain_conv_at_half_weight():
    """(d) mmcv's DCN with its offset branch zero-initialised (as built): offsets 0, masks sigmoid(0) = 0.5, so
    ``dcn(x) = conv2d(x, 0.5 * weight) + bias``; the whole block equals the plain-conv block with those weights."""
    torch.manual_seed(0)
    block = DLAConvBlock(8, 6, use_dcn=True).eval()
    conv = block.conv
    assert type(conv).__name__ == 'ModulatedDeformConv2dPack' and conv.conv_offset.out_channels == 27
    assert conv.conv_offset.weight.abs().sum() == 0 and conv.conv_offset.bias.abs().sum() == 0
    conv.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), F.conv2d(x, 0.5 * conv.weight, conv.bias, padding=1), rtol=0, atol=1e-5)
        plain = DLAConvBlock(8, 6, use_dcn=False).eval()
        plain.conv.weight.copy_(0.5 * conv.weight)
        plain.conv.bias.copy_(conv.bias)
        plain.actf.load_state_dict(block.actf.state_dict())
        torch.testing.assert_close(block(x), plain(x), rtol=0, atol=1e-5)


def test_offset_channels_are_dy_dx_pairs_then_masks():
    """DCNv2's (and mmcv's) layout of the 27 offset-branch channels: 18 offsets (dy, dx) per kernel point, then 9
    mask logits. A bias of dx = +1 everywhere with saturated masks is the plain conv of the image moved one pixel left
    (dy = +1: up), sampled outside as zeros."""
    torch.manual_seed(0)
    conv = DLAConvBlock(4, 5, use_dcn=True).conv
    with torch.no_grad():
        conv.conv_offset.bias[1:18:2] = 1.0  # dx of the 9 points
        conv.conv_offset.bias[18:] = 40.0  # sigmoid -> 1
        x = torch.randn(1, 4, 7, 8)
        # point (ky, kx) of output (h, w) reads x[h - 1 + ky, w + kx]: zero padding 1 above / below, 2 on the right
        shifted = F.pad(x, (0, 2, 1, 1))
        torch.testing.assert_close(conv(x), F.conv2d(shifted, conv.weight, conv.bias), rtol=0, atol=1e-5)
        conv.conv_offset.bias.zero_()
        conv.conv_offset.bias[0:18:2] = 1.0  # dy: the image shifted up
        conv.conv_offset.bias[18:] = 40.0
        shifted = F.pad(x, (1, 1, 0, 2))
        torch.testing.assert_close(conv(x), F.conv2d(shifted, conv.weight, conv.bias), rtol=0, atol=1e-5)


def test_up_sampling_weights_are_the_bilinear_kernel():
    """(e) fill_up_weights written out: k = 4 (factor 2), rows (1/4, 3/4, 3/4, 1/4); k = 8 (factor 4), rows
    (1, 3, 5, 7, 7, 5, 3, 1) / 8; the same kernel in every channel of every ``up_*``."""
    k4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    k8 = torch.tensor([1., 3., 5., 7., 7., 5., 3., 1.]) / 8
    torch.testing.assert_close(bilinear_kernel(4), torch.outer(k4, k4), rtol=0, atol=0)
    torch.testing.assert_close(bilinear_kernel(8), torch.outer(k8, k8), rtol=0, atol=0)
    neck = DLANeck(use_dcn=False)
    ups = {name: m for name, m in neck.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    assert len(ups) == 8
    for name, up in ups.items():
        factor = 4 if name == 'ida_up.up_2' else 2
        kernel = torch.outer(k8, k8) if factor == 4 else torch.outer(k4, k4)
        assert up.stride == (factor, factor) and up.padding == (factor // 2, ) * 2 and up.bias is None
        assert up.groups == up.in_channels == up.out_channels
        torch.testing.assert_close(up.weight.data, kernel.expand_as(up.weight), rtol=0, atol=0)
    # a bilinear factor-2 up-sampling keeps a constant map constant away from the border
    up = ups['dla_up.ida_0.up_1']
    with torch.no_grad():
        out = up(torch.ones(1, up.in_channels, 4, 4))
    assert out.shape == (1, up.in_channels, 8, 8)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.ones_like(out[..., 1:-1, 1:-1]))
