"""The CenterNet (Objects as Points) converter on synthetic originals built from the released files' key lists.

Each synthetic original holds, in every tensor, values that tell which original key it was (``helpers.index_filled``)
and is written as the released files are (``{'epoch', 'state_dict'}``, keys without prefix). It is converted by
the script's function :func:`mmkp.converters.core.convert_file` (it recognises the file and picks its
released-model config), loaded with ``strict=True`` into the model of that config, and every tensor of the model is
compared with the original tensor that :func:`original_name` (written here from the original modules' attribute names
and the ``Sequential`` indices of xingyizhou/CenterNet@4c50fd3 ``src/lib/models/networks/{large_hourglass,
pose_dla_dcn,resnet_dcn}.py``, not from the converter) says it must be. The bias fold of the ResNet-DCN neck is
checked by value and numerically: the converted neck computes what the original's ``deconv_layers`` (a per-stage
loop written here on the original's keys: DCN with bias -> BN -> ReLU -> ConvTranspose -> BN -> ReLU) computes.
"""
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmkp.converters.centernet import (CENTERNET_DLA, CENTERNET_FAMILY, CENTERNET_HOURGLASS, CENTERNET_RESDCN,
                                       RELEASED_CONFIGS, detect_layout)
from mmkp.converters.core import (ConversionError, Layout, StateDictConverter, build_model_from_config, convert_file,
                                  target_shapes_from_config)
from tests.conftest import REPO

from .helpers import LITE, ORIG, index_filled, key_list
from .helpers import original_name as cornernet_name

HG, DLA, RESDCN = (f'centernet_zhou_ctdet_coco_{name}' for name in ('hg', 'dla_2x', 'resdcn18'))
LAYOUTS = {HG: CENTERNET_HOURGLASS, DLA: CENTERNET_DLA, RESDCN: CENTERNET_RESDCN}
CONFIGS = {name: f'{REPO}/{RELEASED_CONFIGS[layout.name]}' for name, layout in LAYOUTS.items()}
#: the original's head attribute of each CenterHeatmapHead branch list
HEADS = {'heatmap_branches': 'hm', 'size_branches': 'wh', 'offset_branches': 'reg'}


def _head_name(key, hourglass):
    """``bbox_head.<branches>.<stack>.<0|2>.<param>`` -> the original head key.

    ``large_hourglass.make_kp_layer``: ``ModuleList`` per stack of ``Sequential(convolution(3, with_bn=False) [.conv],
    Conv2d 1x1)``; ``resnet_dcn`` / ``pose_dla_dcn``: one ``Sequential(Conv2d 3x3, ReLU, Conv2d 1x1)``.
    """
    _, branches, stack, index, param = key.split('.')
    if hourglass:
        return f'{HEADS[branches]}.{stack}.' + ('0.conv' if index == '0' else '1') + f'.{param}'
    assert stack == '0', key
    return f'{HEADS[branches]}.{index}.{param}'


def _resdcn_neck_name(key):
    """``neck.deconv_layers.<k>.<conv|bn>.<rest>`` -> ``deconv_layers.<j>.<rest>``: mmdet's ConvModule k of stage
    k // 2 is, in ``PoseResNet._make_deconv_layer``'s list [DCN, BN, ReLU, ConvTranspose2d, BN, ReLU] per stage, the
    DCN (k even) or the ConvTranspose2d (k odd), its BN the next entry."""
    parts = key.split('.')
    k, module, rest = int(parts[2]), parts[3], parts[4:]
    j = 6 * (k // 2) + 3 * (k % 2) + (1 if module == 'bn' else 0)
    if rest[0] == 'conv_offset':
        rest = ['conv_offset_mask'] + rest[1:]
    return '.'.join(['deconv_layers', str(j)] + rest)


def original_name(key, name):
    """The key of the released file ``name`` (a key list name) that holds mmkp tensor ``key``."""
    if key.startswith('bbox_head.'):
        return _head_name(key, name == HG)
    if name == HG:  # CornerNet's Hourglass-104 under princeton-vl/CornerNet's names (helpers, written for CornerNet)
        return cornernet_name(key, ORIG)[len('module.'):]
    if name == DLA:
        if key.startswith('backbone.'):
            return 'base.' + key[len('backbone.'):]
        return key[len('neck.'):].replace('.conv_offset.', '.conv_offset_mask.')
    if key.startswith('backbone.'):
        return key[len('backbone.'):]
    return _resdcn_neck_name(key)


#: ResNet-DCN: the three DCN biases (original keys) and the running mean (mmkp key) of the BN each folds into
RESDCN_FOLDS = {f'deconv_layers.{6 * s}.bias': f'neck.deconv_layers.{2 * s}.bn.running_mean' for s in range(3)}
#: DLA: the unused ImageNet classifier of the released file
DLA_DROPPED = ['base.fc.weight', 'base.fc.bias']


@pytest.fixture(scope='module')
def models():
    """The released-model configs' models, built once (Hourglass-104: 191 M parameters)."""
    return {name: build_model_from_config(config).eval() for name, config in CONFIGS.items()}


def test_independent_names_cover_the_key_lists(models):
    """The test's own mmkp -> original names are one to one onto each key list, less the folded / dropped keys."""
    left_out = {HG: [], DLA: DLA_DROPPED, RESDCN: list(RESDCN_FOLDS)}
    for name, model in models.items():
        shapes = key_list(name)['state_dict']
        names = {original_name(k, name): list(v.shape) for k, v in model.state_dict().items()}
        assert len(names) == len(model.state_dict()), name
        assert names == {k: v for k, v in shapes.items() if k not in left_out[name]}, name
    assert [len(key_list(n)['state_dict']) for n in (HG, DLA, RESDCN)] == [984, 400, 177]


def _write_release(name, tmp_path, drop=(), extra=None):
    """The synthetic ``<name>.pth`` as the original's ``save_model`` writes it: ``{'epoch', 'state_dict'}``."""
    original = index_filled(key_list(name)['state_dict'], drop)
    original.update(extra or {})
    src = tmp_path / f'{name}.pth'
    torch.save({'epoch': 140, 'state_dict': original}, src)
    return original, src


def _convert_and_load(name, model, tmp_path):
    original, src = _write_release(name, tmp_path)
    dst = tmp_path / 'converted.pth'
    result, meta = convert_file(CENTERNET_FAMILY, str(src), str(dst), repo_root=REPO)
    assert meta['config'] == CONFIGS[name] and result.layout is LAYOUTS[name]
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'} and ckpt['meta'] == meta
    model.load_state_dict(ckpt['state_dict'], strict=True)
    return original, result, meta


def _wrong_values(model, original, name, expected=None):
    """Model tensors that differ from the original tensor at their original name (or from ``expected[key]``)."""
    wrong = []
    for key, value in model.state_dict().items():
        source = (expected or {}).get(key, original.get(original_name(key, name)))
        if source is None or value.dtype != source.dtype or not torch.equal(value, source):
            wrong.append(key)
    return wrong


def test_hourglass_file_converts_value_for_value(models, tmp_path):
    model = models[HG]
    original, result, meta = _convert_and_load(HG, model, tmp_path)
    assert len(result.sources) == 984 and not result.filled and not result.dropped and not result.folded
    assert meta['layout'] == 'CenterNet ctdet_coco_hg.pth' and meta['converter'] == 'centernet_to_mmkp'
    assert meta['original'] == 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/large_hourglass.py'
    assert meta['source_wrapper'] == 'state_dict' and 'folded' not in meta
    assert _wrong_values(model, original, HG) == []
    head, backbone = model.bbox_head, model.backbone
    pairs = {
        'hm.1.1.bias': head.heatmap_branches[1][2].bias,
        'hm.0.0.conv.weight': head.heatmap_branches[0][0].weight,
        'wh.1.0.conv.bias': head.size_branches[1][0].bias,
        'reg.0.1.weight': head.offset_branches[0][2].weight,
        'pre.1.skip.1.running_var': backbone.stem[1][0].downsample[1].running_var,
        'kps.1.low2.low3.0.conv1.weight': backbone.hourglass_modules[1].low2.low3[0].conv1.weight,
        'inters_.0.1.bias': backbone.conv1x1s[0].bn.bias,
        'cnvs_.0.0.weight': backbone.remap_convs[0].conv.weight,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key
    assert head.heatmap_branches[1][2].bias.shape == (80, )


def test_dla_file_converts_value_for_value(models, tmp_path):
    model = models[DLA]
    original, result, meta = _convert_and_load(DLA, model, tmp_path)
    assert len(result.sources) == 398 and result.dropped == DLA_DROPPED == meta['dropped'] and not result.folded
    assert meta['original'] == 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/pose_dla_dcn.py'
    assert _wrong_values(model, original, DLA) == []
    neck, head = model.neck, model.bbox_head
    pairs = {
        'ida_up.node_2.conv.conv_offset_mask.bias': neck.ida_up.node_2.conv.conv_offset.bias,
        'dla_up.ida_1.proj_2.conv.bias': neck.dla_up.ida_1.proj_2.conv.bias,  # the DCN bias, kept
        'dla_up.ida_0.up_1.weight': neck.dla_up.ida_0.up_1.weight,
        'base.level3.tree2.root.conv.weight': model.backbone.level3.tree2.root.conv.weight,
        'hm.2.bias': head.heatmap_branches[0][2].bias,
        'wh.0.weight': head.size_branches[0][0].weight,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key


def test_resdcn_file_converts_and_folds_the_dcn_biases(models, tmp_path):
    model = models[RESDCN]
    original, result, meta = _convert_and_load(RESDCN, model, tmp_path)
    assert len(result.sources) == 174 and not result.dropped and not result.filled
    assert result.folded == {target: key for key, target in RESDCN_FOLDS.items()}
    assert meta['folded'] == [f'{key} -> {target}' for key, target in RESDCN_FOLDS.items()]
    assert meta['original'] == 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/resnet_dcn.py'
    # the folded running means: m - b, the original's running mean minus the bias of the DCN before the BN
    expected = {target: original[f'deconv_layers.{6 * s + 1}.running_mean'] - original[f'deconv_layers.{6 * s}.bias']
                for s, target in enumerate(RESDCN_FOLDS.values())}
    assert all(not torch.equal(expected[t], original[original_name(t, RESDCN)]) for t in expected)  # not a no-op
    assert _wrong_values(model, original, RESDCN, expected) == []
    neck, head = model.neck.deconv_layers, model.bbox_head
    pairs = {
        'deconv_layers.6.conv_offset_mask.weight': neck[2].conv.conv_offset.weight,
        'deconv_layers.9.weight': neck[3].conv.weight,
        'deconv_layers.16.running_var': neck[5].bn.running_var,
        'deconv_layers.13.weight': neck[4].bn.weight,
        'layer3.0.downsample.1.running_mean': model.backbone.layer3[0].downsample[1].running_mean,
        'reg.2.weight': head.offset_branches[0][2].weight,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key
    assert neck[0].conv.bias is None  # mmdet's ConvModule has no DCN bias: hence the fold


def _original_deconv_layers(sd, x):
    """``PoseResNet.deconv_layers`` in eval, on the original's keys: per stage DCN (with bias) -> BN -> ReLU ->
    ConvTranspose2d(4, stride 2, padding 1, no bias) -> BN -> ReLU (xingyizhou/CenterNet@4c50fd3 ``resnet_dcn.py``;
    the DCN as ``DCNv2/dcn_v2.py::DCN.forward``: offsets and sigmoid masks from ``conv_offset_mask``)."""
    from mmcv.ops import modulated_deform_conv2d

    def bn(y, j):
        return F.batch_norm(y, sd[f'deconv_layers.{j}.running_mean'], sd[f'deconv_layers.{j}.running_var'],
                            sd[f'deconv_layers.{j}.weight'], sd[f'deconv_layers.{j}.bias'], False, 0.1, 1e-5)

    for s in range(3):
        d = 6 * s
        out = F.conv2d(x, sd[f'deconv_layers.{d}.conv_offset_mask.weight'],
                       sd[f'deconv_layers.{d}.conv_offset_mask.bias'], padding=1)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        y = modulated_deform_conv2d(x, torch.cat((o1, o2), dim=1), torch.sigmoid(mask), sd[f'deconv_layers.{d}.weight'],
                                    sd[f'deconv_layers.{d}.bias'], 1, 1, 1, 1, 1)
        y = F.relu(bn(y, d + 1))
        y = F.conv_transpose2d(y, sd[f'deconv_layers.{d + 3}.weight'], stride=2, padding=1)
        x = F.relu(bn(y, d + 4))
    return x


def test_folded_resdcn_neck_computes_the_original(models, tmp_path):
    """Random original neck weights (biases, offsets and BN statistics all non-zero), converted and loaded: the mmdet
    neck in eval gives the original's output."""
    model = models[RESDCN]
    shapes = key_list(RESDCN)['state_dict']
    gen = torch.Generator().manual_seed(0)
    original = {}
    for key, shape in shapes.items():
        if key.endswith('num_batches_tracked'):
            original[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith('running_var'):
            original[key] = torch.rand(shape, generator=gen) + 0.5
        elif re.match(r'^deconv_layers\.\d+\.(weight|bias|running_mean)$', key) and len(shape) == 1:
            original[key] = torch.randn(shape, generator=gen) * (3.0 if key.endswith('bias') else 1.0)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            original[key] = torch.randn(shape, generator=gen) / fan_in ** 0.5
    src, dst = tmp_path / 'ctdet_coco_resdcn18.pth', tmp_path / 'converted.pth'
    torch.save({'epoch': 140, 'state_dict': original}, src)
    convert_file(CENTERNET_FAMILY, str(src), str(dst), repo_root=REPO)
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    x = torch.randn(2, 512, 5, 6, generator=gen)
    with torch.no_grad():
        got = model.neck((x, ))[0]
        want = _original_deconv_layers(original, x)
        first = model.neck.deconv_layers[0](x)
    assert got.shape == want.shape == (2, 64, 40, 48)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # one BN on its own: DCN + bias -> BN against bias-free DCN -> BN with m - b (float32 rounding only)
    from mmcv.ops import modulated_deform_conv2d
    with torch.no_grad():
        out = F.conv2d(x, original['deconv_layers.0.conv_offset_mask.weight'],
                       original['deconv_layers.0.conv_offset_mask.bias'], padding=1)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        y = modulated_deform_conv2d(x, torch.cat((o1, o2), 1), torch.sigmoid(mask), original['deconv_layers.0.weight'],
                                    original['deconv_layers.0.bias'], 1, 1, 1, 1, 1)
        ref = F.relu(F.batch_norm(y, original['deconv_layers.1.running_mean'], original['deconv_layers.1.running_var'],
                                  original['deconv_layers.1.weight'], original['deconv_layers.1.bias'], False, 0.1,
                                  1e-5))
    torch.testing.assert_close(first, ref, rtol=1e-5, atol=1e-5)
    # dropping the biases instead of folding them would be visibly wrong
    dropped_bias = dict(original, **{key: torch.zeros_like(original[key]) for key in RESDCN_FOLDS})
    with torch.no_grad():
        assert (got - _original_deconv_layers(dropped_bias, x)).abs().max() > 1e-2


# --- recognition and refusals (shapes only: the key lists themselves) ---


@pytest.fixture(scope='module')
def resdcn_shapes():
    return target_shapes_from_config(CONFIGS[RESDCN])


def test_recognises_each_file_and_refuses_others():
    for name, layout in LAYOUTS.items():
        assert detect_layout(key_list(name)['state_dict'], name) is layout
        assert detect_layout({'module.' + k: v for k, v in key_list(name)['state_dict'].items()}) is layout
    with pytest.raises(ConversionError, match=r"CornerNet_500000\.pkl: matches none of the layouts centernet_to_mmkp "
                       r"reads .*'\^kps.*'\^dla_up.*'\^deconv_layers.*first keys: 'hg\.pre\.0\.conv\.weight'"):
        detect_layout(key_list(LITE)['state_dict'], 'CornerNet_500000.pkl')


@pytest.mark.parametrize('name', [HG, DLA, RESDCN])
def test_key_lists_convert_one_to_one(name, models):
    shapes = {k: tuple(v.shape) for k, v in models[name].state_dict().items()}
    result = CENTERNET_FAMILY.converter(shapes).convert(key_list(name)['state_dict'], f'{name}.pth')
    assert len(result.sources) == len(shapes) and not result.filled


def test_refuses_an_unmapped_key(resdcn_shapes):
    shapes = dict(key_list(RESDCN)['state_dict'])
    shapes['deconv_layers.18.weight'] = [32, 64, 3, 3]  # a 4th up-sampling stage
    with pytest.raises(ConversionError, match=r"ctdet_coco_resdcn18\.pth \(read as the CenterNet ctdet_coco_resdcn18"
                       r"\.pth layout by centernet_to_mmkp\): 1 key\(s\) match no rule: 'deconv_layers\.18\.weight'"):
        CENTERNET_FAMILY.converter(resdcn_shapes).convert(shapes, 'ctdet_coco_resdcn18.pth')
    shapes = dict(key_list(RESDCN)['state_dict'])
    shapes['hm.1.weight'] = [64]  # the ReLU of the head has no weight
    with pytest.raises(ConversionError, match=r"match no rule: 'hm\.1\.weight'"):
        CENTERNET_FAMILY.converter(resdcn_shapes).convert(shapes, 'ctdet_coco_resdcn18.pth')


def test_refuses_a_missing_key(resdcn_shapes):
    shapes = dict(key_list(RESDCN)['state_dict'])
    del shapes['reg.2.bias']
    with pytest.raises(ConversionError, match=r"1 key\(s\) of the model are filled by no source key: "
                       r"'bbox_head\.offset_branches\.0\.2\.bias'"):
        CENTERNET_FAMILY.converter(resdcn_shapes).convert(shapes, 'ctdet_coco_resdcn18.pth')
    shapes = dict(key_list(RESDCN)['state_dict'])
    del shapes['deconv_layers.7.running_mean']  # the running mean a bias folds into
    with pytest.raises(ConversionError, match=r"filled by no source key: 'neck\.deconv_layers\.2\.bn\.running_mean'"):
        CENTERNET_FAMILY.converter(resdcn_shapes).convert(shapes, 'ctdet_coco_resdcn18.pth')


def test_refuses_a_wrong_shape(resdcn_shapes):
    shapes = dict(key_list(RESDCN)['state_dict'])
    shapes['hm.2.weight'] = [81, 64, 1, 1]
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'hm.2.weight' has shape [81, 64, 1, 1], its "
                                                        "target 'bbox_head.heatmap_branches.0.2.weight' has shape "
                                                        "[80, 64, 1, 1]")):
        CENTERNET_FAMILY.converter(resdcn_shapes).convert(shapes, 'ctdet_coco_resdcn18.pth')
    shapes = dict(key_list(RESDCN)['state_dict'])
    shapes['deconv_layers.12.bias'] = [128]
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'deconv_layers.12.bias' has shape [128], the "
                                                        "running mean it folds into, 'neck.deconv_layers.4.bn."
                                                        "running_mean', has shape [64]")):
        CENTERNET_FAMILY.converter(resdcn_shapes).convert(shapes, 'ctdet_coco_resdcn18.pth')


def test_refuses_a_file_for_another_model(tmp_path):
    """The DLA file with the ResNet-DCN config: its keys name nothing of that model."""
    _, src = _write_release(DLA, tmp_path)
    with pytest.raises(ConversionError, match=r"map to names the model does not have: 'base\.base_layer\.0\.weight "
                       r"-> backbone\.base_layer\.0\.weight'"):
        convert_file(CENTERNET_FAMILY, str(src), str(tmp_path / 'x.pth'), config=CONFIGS[RESDCN])


def test_bias_folds_in_core():
    """``Layout.bias_folds`` on a toy model: the value, and every refusal names the key."""
    shapes = {'conv.weight': (2, 1, 1, 1), 'bn.running_mean': (2, ), 'bn.running_var': (2, )}
    layout = Layout(name='toy', original='example/toy@0000000 toy.py', rules=[(r'^(conv|bn)\.', r'\1.')],
                    bias_folds=[(r'^conv\.bias$', 'bn.running_mean')])
    source = {'conv.weight': torch.ones(2, 1, 1, 1), 'conv.bias': torch.tensor([1.5, -2.0]),
              'bn.running_mean': torch.tensor([0.25, 1.0]), 'bn.running_var': torch.ones(2)}
    result = StateDictConverter(layout, shapes).convert(source)
    assert torch.equal(result.state_dict['bn.running_mean'], torch.tensor([0.25 - 1.5, 1.0 + 2.0]))
    assert torch.equal(source['bn.running_mean'], torch.tensor([0.25, 1.0]))  # the source is left as it was
    assert result.folded == {'bn.running_mean': 'conv.bias'} and list(result.state_dict) == list(shapes)
    with pytest.raises(ConversionError, match=r"'module\.conv\.bias' and 'conv\.bias' both fold into "
                       r"'bn\.running_mean'"):
        StateDictConverter(layout, shapes).convert(dict(source, **{'module.conv.bias': torch.zeros(2)}))
    unknown = Layout(name='toy', original='', rules=layout.rules, bias_folds=[(r'^conv\.bias$', 'bn.mean')])
    with pytest.raises(ConversionError, match=r"'conv\.bias -> bn\.mean \(bias fold\)'"):
        StateDictConverter(unknown, shapes).convert(source)
    with pytest.raises(ConversionError, match=r"'conv\.bias' has shape \[3\], the running mean it folds into"):
        StateDictConverter(layout, shapes).convert(dict(source, **{'conv.bias': torch.zeros(3)}))
    with pytest.raises(ValueError, match='a bias fold needs the running_mean'):
        Layout(name='bad', original='', rules=[], bias_folds=[(r'^x', None)])


def test_script_picks_the_config_or_refuses_naming_the_key(tmp_path):
    _, src = _write_release(RESDCN, tmp_path)
    dst = tmp_path / 'resdcn18.pth'
    script = f'{REPO}/tools/model_converters/centernet_to_mmkp.py'
    proc = subprocess.run([sys.executable, script, str(src), str(dst)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '174 tensors' in proc.stdout and 'centernet_r18-dcnv2_released_coco.py' in proc.stdout
    assert '3 convolution biases folded' in proc.stdout
    assert len(torch.load(dst, weights_only=True)['state_dict']) == 174
    _, src = _write_release(RESDCN, tmp_path, drop=[r'^wh\.0\.bias$'])
    refused = tmp_path / 'refused.pth'
    proc = subprocess.run([sys.executable, script, str(src), str(refused)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1 and not refused.exists()
    assert "'bbox_head.size_branches.0.0.bias'" in proc.stderr


@pytest.mark.parametrize('name,pad', [(HG, 127), (DLA, 31), (RESDCN, 31)])
def test_released_configs_pad_black_as_the_original(name, pad):
    """The test canvas of each released-model config, against the original's ``pre_process`` written out
    (xingyizhou/CenterNet@4c50fd3 ``src/lib/detectors/base_detector.py``, ``--keep_res``): size ``(h | pad) + 1``,
    the image translated by ``inp / 2 - (w // 2, h // 2)`` (``get_affine_transform`` of centre ``(w // 2, h // 2)``
    and scale ``inp``: a pure integer shift), the rest 0 (``cv2.warpAffine``'s border) before normalisation."""
    import numpy as np
    from mmdet.registry import TRANSFORMS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(CONFIGS[name])
    assert cfg.model.data_preprocessor.bgr_to_rgb is False
    assert np.allclose(cfg.model.data_preprocessor.mean, [255 * v for v in (0.40789654, 0.44719302, 0.47026115)])
    tta_pads = [t for step in cfg.tta_pipeline[1].transforms for t in step if t['type'] == 'RandomCenterCropPad']
    h, w = 37, 50
    img = np.random.default_rng(0).integers(1, 256, (h, w, 3)).astype(np.float32)
    for pad_cfg in [cfg.test_dataloader.dataset.pipeline[1], cfg.val_dataloader.dataset.pipeline[1]] + tta_pads:
        out = TRANSFORMS.build(pad_cfg)(dict(img=img.copy(), img_shape=(h, w)))
        inp_h, inp_w = (h | pad) + 1, (w | pad) + 1
        want = np.zeros((inp_h, inp_w, 3), np.float32)
        top, left = inp_h // 2 - h // 2, inp_w // 2 - w // 2
        want[top:top + h, left:left + w] = img
        assert out['img'].shape == want.shape and np.array_equal(out['img'], want), pad_cfg
        assert list(out['border']) == [top, top + h, left, left + w]
