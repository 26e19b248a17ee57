"""Hourglass-54 of CornerNet-Saccade (princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet_Saccade.py``).

The released key list fixes the tensors; mmdet's ``HourglassNet`` with the same (copied) weights is the independent
reference of the features, and hooks on its nested ``HourglassModule`` s the reference of the merge outputs.
"""
import pytest
import torch
from mmdet.models import HourglassNet
from mmdet.models.backbones.hourglass import HourglassModule

from mmkp.converters.cornernet import CORNERNET_LITE, convert_backbone
from mmkp.models.backbones import Hourglass54, MergeHourglassModule
from mmkp.registry import MODELS

SACCADE = 'cornernetlite_cornernet_saccade'
SMALL = dict(stage_channels=(16, 24, 24, 32), feat_channel=16)


@pytest.fixture(scope='module')
def hourglass54():
    return Hourglass54().eval()


def test_parameters_and_tensors_equal_the_released_backbone(hourglass54, original_checkpoint, param_count):
    shapes = original_checkpoint(SACCADE)['state_dict']
    assert param_count(shapes, ('module.hg.', )) == 89_884_544
    assert sum(p.numel() for p in hourglass54.parameters()) == 89_884_544
    assert len(hourglass54.state_dict()) == sum(k.startswith('module.hg.') for k in shapes) == 540


def test_released_backbone_keys_map_by_the_cornernet_rules(hourglass54, original_checkpoint):
    shapes = original_checkpoint(SACCADE)['state_dict']
    converted, left = convert_backbone(shapes, layouts=(CORNERNET_LITE, ))
    ours = {k: list(v.shape) for k, v in hourglass54.state_dict().items()}
    wrong = {k: (shape, ours.get(k)) for k, shape in converted.items() if ours.get(k) != shape}
    assert not wrong
    assert sorted(converted) == sorted(ours)
    assert all(not k.startswith('module.hg.') for k in left)


def test_registered_and_built_from_config():
    model = MODELS.build(dict(type='Hourglass54', **SMALL))
    assert isinstance(model, Hourglass54)
    assert all(isinstance(m, MergeHourglassModule) for m in model.hourglass_modules)
    # the nested levels are merge modules too (mmdet nests plain ones)
    assert isinstance(model.hourglass_modules[0].low2, MergeHourglassModule)
    assert isinstance(model.hourglass_modules[0].low2.low2, MergeHourglassModule)
    assert not isinstance(model.hourglass_modules[0].low2.low2.low2, HourglassModule)
    assert model.merge_channels == (24, 24, 16)


def test_outputs_equal_mmdet_hourglassnet_and_its_nested_modules():
    torch.manual_seed(0)
    ours = Hourglass54(**SMALL).eval()
    for m in ours.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ref = HourglassNet(downsample_times=3, num_stacks=3, stage_blocks=(1, 1, 1, 1), **SMALL).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    captured = {}

    def hook(name):
        def fn(module, inputs, output):
            captured[name] = output
        return fn

    for s, hg in enumerate(ref.hourglass_modules):
        hg.register_forward_hook(hook((s, 2)))  # 64 x 64
        hg.low2.register_forward_hook(hook((s, 1)))  # 32 x 32
        hg.low2.low2.register_forward_hook(hook((s, 0)))  # 16 x 16
    x = torch.rand(2, 3, 255, 255)
    with torch.no_grad():
        out = ours(x)
        feats = ref(x)
    assert len(out) == 3 + 3 * 3
    for s in range(3):
        torch.testing.assert_close(out[s], feats[s], rtol=0, atol=0)
        for level, size, channels in ((0, 16, 24), (1, 32, 24), (2, 64, 16)):
            merge = out[3 + 3 * s + level]
            assert merge.shape == (2, channels, size, size)
            torch.testing.assert_close(merge, captured[(s, level)], rtol=0, atol=0)


def test_without_merges_returns_the_features_only():
    model = Hourglass54(num_stacks=2, with_merges=False, **SMALL).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 127, 127))
    assert [tuple(t.shape) for t in out] == [(1, 16, 32, 32)] * 2


def test_bad_level_counts_are_refused():
    with pytest.raises(ValueError, match='downsample_times'):
        Hourglass54(stage_channels=(16, 24, 32), feat_channel=16)
