"""HourglassSqueezeNet (CornerNet-Squeeze backbone): shapes, exact size, checkpoint mapping, semantics, gradients."""
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmkp.converters.cornernet import CORNERNET_SQUEEZE, convert_backbone
from mmkp.models.backbones import HourglassSqueezeNet
from mmkp.models.layers import FireModule
from mmkp.registry import MODELS

SMALL = dict(stage_channels=(16, 16, 24, 24, 32), stage_blocks=(1, 1, 1, 1, 2), feat_channel=16)
#: channels change at every level and every branch has 2+ fire modules somewhere, so the order of the
#: channel-changing fire in low1 / low3 matters
TINY = dict(stage_channels=(8, 12, 16, 16, 20), stage_blocks=(2, 2, 1, 2, 3), feat_channel=10)
SQUEEZE = 'cornernetlite_cornernet_squeeze'
HEAD_PREFIXES = tuple(
    f'module.{side}_{part}.' for side in ('tl', 'br') for part in ('modules', 'heats', 'tags', 'offs'))


def test_registered_and_built_from_config():
    model = MODELS.build(dict(type='HourglassSqueezeNet', **SMALL))
    assert type(model) is HourglassSqueezeNet
    assert MODELS.get('FireModule') is FireModule


def test_small_config_511_input_gives_64x64_per_stack():
    torch.manual_seed(0)
    model = HourglassSqueezeNet(**SMALL)
    feats = model(torch.rand(1, 3, 511, 511))
    assert isinstance(feats, list) and len(feats) == 2
    for feat in feats:
        assert feat.shape == (1, 16, 64, 64)
        assert torch.isfinite(feat).all() and (feat >= 0).all()  # conv-BN-ReLU output
    assert not torch.equal(feats[0], feats[1])


def test_full_config_shapes_on_a_small_input():
    model = HourglassSqueezeNet().eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, 127, 127))  # 127 -> 64 -> 32 -> 16 (stride 8)
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16, 16)] * 2


def test_odd_sizes_are_cropped_after_the_transposed_convolution():
    model = HourglassSqueezeNet(num_stacks=1, **SMALL).eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, 100, 75))
    assert len(feats) == 1 and feats[0].shape == (1, 16, 13, 10)  # ceil(100 / 8), ceil(75 / 8)


def test_full_parameter_count_equals_the_original_backbone(original_checkpoint, param_count):
    ckpt = original_checkpoint(SQUEEZE)
    shapes = ckpt['state_dict']
    # the counting rule reproduces the JSON's total (parameters only, BN buffers left out)
    assert param_count(shapes) == ckpt['num_params'] == 31_771_852
    original_backbone = param_count(shapes, ('module.hg.', ))
    model = HourglassSqueezeNet()
    ours = sum(p.numel() for p in model.parameters())
    assert ours == original_backbone == 24_728_448
    # and the buffers: the same number of tensors as the original backbone, num_batches_tracked included
    assert len(model.state_dict()) == sum(k.startswith('module.hg.') for k in shapes) == 822


def test_original_checkpoint_keys_map_onto_the_backbone(original_checkpoint):
    shapes = original_checkpoint(SQUEEZE)['state_dict']
    converted, left = convert_backbone(shapes, layouts=(CORNERNET_SQUEEZE, ))
    ours = {k: list(v.shape) for k, v in HourglassSqueezeNet().state_dict().items()}
    wrong = {k: (shape, ours.get(k)) for k, shape in converted.items() if ours.get(k) != shape}
    assert not wrong, f'mapped keys missing from the backbone or with another shape: {wrong}'
    unmapped = sorted(k for k in ours if k not in converted)
    assert not unmapped, f'backbone tensors no original key maps to: {unmapped}'
    # what is left is exactly the head: corner pooling modules and prediction modules
    assert len(converted) == 822 and len(left) == 168
    assert all(k.startswith(HEAD_PREFIXES) for k in left)
    assert not any(k.startswith('module.hg.') for k in left)


def test_original_tensors_load_strictly_into_the_right_places(original_checkpoint):
    shapes = original_checkpoint(SQUEEZE)['state_dict']
    # every original tensor holds its own index: cheap (expanded scalars) and tells where each one landed
    original = {k: torch.tensor(float(i)).expand(shape) for i, (k, shape) in enumerate(shapes.items())}
    converted, _ = convert_backbone(original, layouts=(CORNERNET_SQUEEZE, ))
    model = HourglassSqueezeNet()
    model.load_state_dict(converted, strict=True)
    pairs = {
        'module.hg.pre.1.skip.0.weight': model.stem[1].downsample[0].weight,
        'module.hg.pre.2.bn2.running_var': model.stem[2].bn2.running_var,
        'module.hg.hgs.1.low2.low2.up2.weight': model.hourglass_modules[1].low2.low2.up2.weight,
        'module.hg.hgs.0.low2.low2.low2.low2.3.conv_3x3.weight':
        model.hourglass_modules[0].low2.low2.low2.low2[3].conv_3x3.weight,
        'module.hg.inters_.0.1.bias': model.conv1x1s[0].bn.bias,  # applied to the hourglass input
        'module.hg.cnvs_.0.0.weight': model.remap_convs[0].conv.weight,  # applied to the stack's feature
        'module.hg.cnvs.1.conv.weight': model.out_convs[1].conv.weight,
    }
    for key, param in pairs.items():
        assert torch.equal(param, original[key]), key


# --- semantics: an independent functional re-statement of DETECTORS.md 2.1-2.3 / 5.1-5.2 over original names ---

def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + 'running_mean'], sd[p + 'running_var'], sd[p + 'weight'], sd[p + 'bias'], False,
                        0.0, 1e-5)


def _convolution(x, sd, p, stride=1):  # `convolution(k, ...)`: conv (no bias) -> BN -> ReLU
    w = sd[p + 'conv.weight']
    return F.relu(_bn(F.conv2d(x, w, stride=stride, padding=(w.shape[-1] - 1) // 2), sd, p + 'bn.'))


def _residual(x, sd, p, stride=1):
    y = F.relu(_bn(F.conv2d(x, sd[p + 'conv1.weight'], stride=stride, padding=1), sd, p + 'bn1.'))
    y = _bn(F.conv2d(y, sd[p + 'conv2.weight'], padding=1), sd, p + 'bn2.')
    if p + 'skip.0.weight' in sd:
        x = _bn(F.conv2d(x, sd[p + 'skip.0.weight'], stride=stride), sd, p + 'skip.1.')
    return F.relu(y + x)


def _fire(x, sd, p, stride=1):
    s = _bn(F.conv2d(x, sd[p + 'conv1.weight']), sd, p + 'bn1.')
    e1 = F.conv2d(s, sd[p + 'conv_1x1.weight'], stride=stride)
    e3 = F.conv2d(s, sd[p + 'conv_3x3.weight'], stride=stride, padding=1, groups=s.shape[1])  # depth-wise
    y = _bn(torch.cat([e1, e3], 1), sd, p + 'bn2.')
    return F.relu(y + x) if stride == 1 and x.shape[1] == y.shape[1] else F.relu(y)


def _fires(x, sd, p, first_stride=1):
    i = 0
    while f'{p}{i}.conv1.weight' in sd:
        x = _fire(x, sd, f'{p}{i}.', first_stride if i == 0 else 1)
        i += 1
    return x


def _hourglass(x, sd, p, n):
    up1 = _fires(x, sd, p + 'up1.')
    low1 = _fires(x, sd, p + 'low1.', first_stride=2)
    low2 = _hourglass(low1, sd, p + 'low2.', n - 1) if n > 1 else _fires(low1, sd, p + 'low2.')
    low3 = _fires(low2, sd, p + 'low3.')
    return up1 + F.conv_transpose2d(low3, sd[p + 'up2.weight'], sd[p + 'up2.bias'], stride=2, padding=1)


def _original_forward(x, sd, n, stacks):
    inter = _residual(_residual(_convolution(x, sd, 'pre.0.', 2), sd, 'pre.1.', 2), sd, 'pre.2.', 2)
    outs = []
    for i in range(stacks):
        cnv = _convolution(_hourglass(inter, sd, f'hgs.{i}.', n), sd, f'cnvs.{i}.')
        outs.append(cnv)
        if i < stacks - 1:
            merged = _bn(F.conv2d(inter, sd[f'inters_.{i}.0.weight']), sd, f'inters_.{i}.1.') + _bn(
                F.conv2d(cnv, sd[f'cnvs_.{i}.0.weight']), sd, f'cnvs_.{i}.1.')
            inter = _residual(F.relu(merged), sd, f'inters.{i}.')
    return outs


#: mmkp name -> original name (without ``module.hg.``), written independently of the converter
_TO_ORIGINAL = [(r'^stem\.(\d+)\.downsample\.', r'pre.\1.skip.'), (r'^stem\.', 'pre.'),
                (r'^hourglass_modules\.', 'hgs.'), (r'^out_convs\.', 'cnvs.'),
                (r'^conv1x1s\.(\d+)\.conv\.', r'inters_.\1.0.'), (r'^conv1x1s\.(\d+)\.bn\.', r'inters_.\1.1.'),
                (r'^remap_convs\.(\d+)\.conv\.', r'cnvs_.\1.0.'), (r'^remap_convs\.(\d+)\.bn\.', r'cnvs_.\1.1.'),
                (r'^inters\.', 'inters.')]


def _to_original(key):
    for pattern, repl in _TO_ORIGINAL:
        new_key, hits = re.subn(pattern, repl, key, count=1)
        if hits:
            return new_key
    raise AssertionError(f'no original name for {key}')


def _randomise_norms(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def test_forward_matches_the_original_computation_under_original_names():
    torch.manual_seed(0)
    model = HourglassSqueezeNet(num_stacks=3, **TINY).double().eval()
    _randomise_norms(model)
    ours = model.state_dict()
    original = {_to_original(k): v for k, v in ours.items()}
    # the converter is the inverse of the renaming above: it puts every original tensor back in its place
    back, left = convert_backbone({'module.hg.' + k: v for k, v in original.items()}, layouts=(CORNERNET_SQUEEZE, ))
    assert not left and list(back) == list(ours) and all(back[k] is ours[k] for k in ours)
    x = torch.rand(1, 3, 128, 128, dtype=torch.float64)  # 128 -> 16: every hourglass level halves exactly
    with torch.no_grad():
        expected = _original_forward(x, original, n=4, stacks=3)
        feats = model(x)
    assert len(feats) == 3
    for feat, ref in zip(feats, expected):
        assert feat.shape == (1, 10, 16, 16)
        torch.testing.assert_close(feat, ref, rtol=1e-10, atol=1e-10)


def test_fire_modules_skip_only_where_the_shape_is_kept():
    model = HourglassSqueezeNet(**TINY)
    hg = model.hourglass_modules[0]
    assert [f.with_skip for f in hg.up1] == [True, True]
    assert [(f.stride, f.with_skip) for f in hg.low1] == [(2, False), (1, True)]  # 8 -> 12 with stride 2, then 12
    assert [f.with_skip for f in hg.low3] == [True, False]  # 12 -> 12, then 12 -> 8
    assert isinstance(hg.up2, nn.ConvTranspose2d) and hg.up2.stride == (2, 2) and hg.up2.kernel_size == (4, 4)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = HourglassSqueezeNet(**TINY)
    model.train()
    # 256 -> 32 -> bottleneck 2 x 2. At 1 x 1 the squeeze BN bias gets no gradient in training mode, in the original
    # too: a constant shift through the expand convs is removed by the next BN; only the zero padding of the 3x3
    # conv lets it through
    feats = model(torch.rand(2, 3, 256, 256))
    loss = sum((f * torch.randn_like(f)).sum() for f in feats)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f'parameters without gradient: {no_grad}'


def test_init_weights_restores_pytorch_default_conv_init():
    torch.manual_seed(0)
    model = HourglassSqueezeNet(**SMALL)
    model.init_weights()
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
            # PyTorch's default: uniform within 1 / sqrt(fan_in); mmcv's Kaiming-normal (fan_out) would exceed it
            assert m.weight.abs().max() <= fan_in**-0.5 + 1e-6, name
        if isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all(), name


@pytest.mark.parametrize('kwargs, match', [
    (dict(stage_channels=(16, 16, 24, 24), stage_blocks=(1, 1, 1, 1, 2)), 'same length'),
    (dict(downsample_times=3, stage_channels=(16, 16, 24, 24, 32), stage_blocks=(1, 1, 1, 1, 2)), '4 values'),
    (dict(stage_blocks=(2, 2, 0, 2, 4)), 'at least one fire module'),
    (dict(stage_channels=(256, 256, 385, 384, 512)), 'even'),
    (dict(num_stacks=0), 'num_stacks'),
    (dict(downsample_times=0, stage_channels=(16, ), stage_blocks=(1, )), 'downsample_times'),
    (dict(feat_channel=0), 'feat_channel'),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HourglassSqueezeNet(**kwargs)
