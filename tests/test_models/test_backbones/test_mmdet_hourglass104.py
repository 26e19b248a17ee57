"""mmdet's ``HourglassNet()`` against CornerNet's Hourglass-104 (DETECTORS.md 3.1) and the released checkpoints.

mmkp uses mmdet's HourglassNet for CornerNet (ARCHITECTURE.md section 2); these tests pin down that its defaults are
the original backbone, tensor for tensor, and that the CornerNet rules of ``mmkp.converters.cornernet`` (those of
``tools/model_converters/cornernet_to_mmkp.py``) map both released ``CornerNet_500000.pkl`` layouts onto it. The last
tests record two mmdet 3.3.0 quirks that matter outside the defaults.
"""
import pytest
import torch
from mmcv.cnn import ConvModule
from mmdet.models import HourglassNet
from mmdet.models.backbones.hourglass import HourglassModule
from torch import nn

from mmkp.converters.cornernet import convert_backbone

LITE = 'cornernetlite_cornernet'
ORIG = 'cornernet_orig_cornernet'
BACKBONE_PREFIXES = {
    LITE: ('module.hg.', ),
    ORIG: tuple(f'module.{p}.' for p in ('pre', 'kps', 'cnvs', 'inters', 'inters_', 'cnvs_')),
}
HEAD_PREFIXES = {
    LITE: tuple(f'module.{s}_{p}.' for s in ('tl', 'br') for p in ('modules', 'heats', 'tags', 'offs')),
    ORIG: tuple(f'module.{s}_{p}.' for s in ('tl', 'br') for p in ('cnvs', 'heats', 'tags', 'regrs')),
}
SMALL = dict(downsample_times=2, stage_channels=(16, 16, 24), stage_blocks=(1, 1, 2), feat_channel=16)


@pytest.fixture(scope='module')
def hourglass104():
    return HourglassNet().eval()


def test_parameter_count_equals_the_original_backbone(hourglass104, original_checkpoint, param_count):
    ours = sum(p.numel() for p in hourglass104.parameters())
    for name in (LITE, ORIG):
        ckpt = original_checkpoint(name)
        assert param_count(ckpt['state_dict']) == ckpt['num_params'] == 201_035_212
        assert param_count(ckpt['state_dict'], BACKBONE_PREFIXES[name]) == ours == 187_700_352
        assert sum(k.startswith(BACKBONE_PREFIXES[name]) for k in ckpt['state_dict']) == 960
    assert len(hourglass104.state_dict()) == 960


@pytest.mark.parametrize('name', [LITE, ORIG])
def test_original_keys_map_onto_mmdet_hourglass(name, hourglass104, original_checkpoint):
    shapes = original_checkpoint(name)['state_dict']
    converted, left = convert_backbone(shapes)
    ours = {k: list(v.shape) for k, v in hourglass104.state_dict().items()}
    wrong = {k: (shape, ours.get(k)) for k, shape in converted.items() if ours.get(k) != shape}
    assert not wrong, f'mapped keys missing from HourglassNet or with another shape: {wrong}'
    unmapped = sorted(k for k in ours if k not in converted)
    assert not unmapped, f'HourglassNet tensors no original key maps to: {unmapped}'
    assert len(converted) == 960 and len(left) == 168
    assert all(k.startswith(HEAD_PREFIXES[name]) for k in left)


def test_original_tensors_load_strictly_into_the_right_places(original_checkpoint):
    shapes = original_checkpoint(LITE)['state_dict']
    # every original tensor holds its own index: cheap (expanded scalars) and tells where each one landed
    original = {k: torch.tensor(float(i)).expand(shape) for i, (k, shape) in enumerate(shapes.items())}
    converted, _ = convert_backbone(original)
    model = HourglassNet()
    model.load_state_dict(converted, strict=True)
    deepest = model.hourglass_modules[1].low2.low2.low2.low2.low2
    pairs = {
        'module.hg.pre.0.conv.weight': model.stem[0].conv.weight,
        'module.hg.pre.1.skip.0.weight': model.stem[1][0].downsample[0].weight,
        'module.hg.hgs.0.low1.0.skip.1.running_mean': model.hourglass_modules[0].low1[0].downsample[1].running_mean,
        'module.hg.hgs.0.low2.low3.1.skip.0.weight': model.hourglass_modules[0].low2.low3[1].downsample[0].weight,
        'module.hg.hgs.1.low2.low2.low2.low2.low2.3.conv2.weight': deepest[3].conv2.weight,
        'module.hg.inters_.0.0.weight': model.conv1x1s[0].conv.weight,  # applied to the hourglass input
        'module.hg.cnvs_.0.1.bias': model.remap_convs[0].bn.bias,  # applied to the stack's feature
        'module.hg.cnvs.1.bn.running_var': model.out_convs[1].bn.running_var,
        'module.hg.inters.0.bn2.weight': model.inters[0].bn2.weight,
    }
    for key, param in pairs.items():
        assert torch.equal(param, original[key]), key
    # the original CornerNet repository's layout, without num_batches_tracked (its PyTorch 0.4.0 had none): BN fills
    # them in, so the strict load still succeeds
    renamed = {
        k.replace('module.hg.hgs.', 'module.kps.').replace('module.hg.', 'module.'): v.neg()
        for k, v in original.items() if not k.endswith('num_batches_tracked')
    }
    converted_orig, _ = convert_backbone(renamed)
    assert len(converted_orig) == 960 - 160
    model.load_state_dict(converted_orig, strict=True)
    assert torch.equal(model.hourglass_modules[1].low2.low3[0].conv1.weight,
                       -original['module.hg.hgs.1.low2.low3.0.conv1.weight'])
    assert torch.equal(model.conv1x1s[0].bn.weight, -original['module.hg.inters_.0.1.weight'])


def _levels(module):
    """(in channels, next channels, #blocks up1 / low1 / low3) per level, then the bottleneck (channels, blocks)."""
    levels = []
    while isinstance(module, HourglassModule):
        levels.append((module.up1[0].conv1.in_channels, module.low1[0].conv1.out_channels, len(module.up1),
                       len(module.low1), len(module.low3)))
        module = module.low2
    return levels, (module[0].conv1.in_channels, len(module))


def test_structure_is_hourglass104_of_detectors_3_1(hourglass104):
    stem_conv, stem_res = hourglass104.stem
    assert isinstance(stem_conv, ConvModule) and stem_conv.conv.kernel_size == (7, 7)
    assert stem_conv.conv.stride == (2, 2) and stem_conv.conv.out_channels == 128 and stem_conv.with_norm
    assert stem_conv.with_activation
    assert len(stem_res) == 1 and stem_res[0].conv1.stride == (2, 2) and stem_res[0].conv2.out_channels == 256
    assert stem_res[0].downsample[0].stride == (2, 2)
    assert not any(isinstance(m, nn.MaxPool2d) for m in hourglass104.modules())  # down-sampling by stride only
    for hg in hourglass104.hourglass_modules:
        levels, bottleneck = _levels(hg)
        assert levels == [(256, 256, 2, 2, 2), (256, 384, 2, 2, 2), (384, 384, 2, 2, 2), (384, 384, 2, 2, 2),
                          (384, 512, 2, 2, 2)]
        assert bottleneck == (512, 4)
        module = hg
        while isinstance(module, HourglassModule):
            assert module.low1[0].conv1.stride == (2, 2) and module.low1[0].downsample[0].stride == (2, 2)
            assert all(block.conv1.stride == (1, 1) for block in list(module.low1)[1:] + list(module.up1))
            assert module.low3[-1].conv2.out_channels == module.up1[0].conv1.in_channels
            assert module.upsample_cfg == dict(mode='nearest')
            module = module.low2
    assert len(hourglass104.out_convs) == 2 and len(hourglass104.inters) == 1
    for conv in hourglass104.out_convs:
        assert conv.conv.kernel_size == (3, 3) and conv.with_norm and conv.with_activation and conv.conv.bias is None
    for conv in list(hourglass104.conv1x1s) + list(hourglass104.remap_convs):
        assert conv.conv.kernel_size == (1, 1) and conv.with_norm and not conv.with_activation
        assert conv.conv.bias is None
    assert hourglass104.inters[0].downsample is None and hourglass104.inters[0].conv1.in_channels == 256


def test_forward_flow_nearest_upsampling_and_inter_stack_input(hourglass104):
    seen = {}

    def keep(name, output=True):
        def hook(module, args, out):
            seen[name] = (out if output else args[0]).clone()
        return hook

    hg0 = hourglass104.hourglass_modules[0]
    hooks = [
        hg0.register_forward_hook(keep('hg0_in', output=False)),
        hg0.register_forward_hook(keep('hg0_out')),
        hg0.up1.register_forward_hook(keep('up1')),
        hg0.low3.register_forward_hook(keep('low3')),
        hourglass104.out_convs[0].register_forward_hook(keep('feat0')),
        hourglass104.conv1x1s[0].register_forward_hook(keep('conv1x1_in', output=False)),
        hourglass104.remap_convs[0].register_forward_hook(keep('remap_in', output=False)),
        hourglass104.hourglass_modules[1].register_forward_hook(keep('hg1_in', output=False)),
    ]
    try:
        with torch.no_grad():
            feats = hourglass104(torch.rand(1, 3, 63, 63))  # 63 -> 32 -> 16 (stride 4)
    finally:
        for h in hooks:
            h.remove()
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16, 16)] * 2
    assert torch.equal(seen['feat0'], feats[0])
    # the merge uses the *input* of the hourglass just run (inters_ of the original), and that stack's feature
    assert torch.equal(seen['conv1x1_in'], seen['hg0_in'])
    assert torch.equal(seen['remap_in'], feats[0])
    with torch.no_grad():
        merged = hourglass104.relu(hourglass104.conv1x1s[0](seen['hg0_in']) + hourglass104.remap_convs[0](feats[0]))
        torch.testing.assert_close(seen['hg1_in'], hourglass104.inters[0](merged))
    # nearest x2 up-sampling of low3, added to up1
    nearest = seen['low3'].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(seen['hg0_out'] - seen['up1'], nearest)


def test_quirk_norm_cfg_does_not_reach_the_hourglass_modules():
    """mmdet 3.3.0: ``HourglassNet`` builds ``HourglassModule`` without its ``norm_cfg`` (and each module its
    ``low2`` likewise), so only the stem and the inter-stack layers follow a non-default ``norm_cfg``."""
    model = HourglassNet(norm_cfg=dict(type='GN', num_groups=4), **SMALL)
    hg_norms = {type(m) for m in model.hourglass_modules.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}
    stem_norms = {type(m) for m in model.stem.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}
    assert hg_norms == {nn.BatchNorm2d} and stem_norms == {nn.GroupNorm}


def test_quirk_one_stack_builds_an_unused_inter_residual():
    """mmdet 3.3.0: ``inters`` is a ``ResLayer`` of ``num_stacks - 1`` blocks, and ``ResLayer`` always builds at
    least one, so ``num_stacks=1`` carries a residual block that forward never uses (the original has none;
    1,180,672 extra parameters at 256 channels)."""
    torch.manual_seed(0)
    model = HourglassNet(num_stacks=1, **SMALL)
    assert len(model.inters) == 1
    feats = model(torch.rand(2, 3, 64, 64))
    sum((f * torch.randn_like(f)).sum() for f in feats).backward()
    assert all(p.grad is None for p in model.inters.parameters())
    assert all(p.grad is not None for name, p in model.named_parameters() if not name.startswith('inters.'))
