"""The FCOS converter on synthetic originals built from the released files' key lists.

Each synthetic original holds, in every tensor, values that tell which original key it was (``helpers.index_filled``)
and is written as the released files are (``{'model', 'iteration'}``, keys under ``module.``). It is converted
(:func:`mmkp.converters.core.convert_file` / the script), loaded with ``strict=True`` into the model of its
released-model config, and every tensor of the model is compared with the original tensor that :func:`original_name`
says it must be. :func:`original_name` is written here from the original modules' attribute names and ``Sequential``
indices (tianzhi0549/FCOS@a773f12 ``fcos_core/modeling/backbone/resnet.py``: ``stem.conv1 / bn1``, ``layer{1-4}``;
``fpn.py``: ``fpn_inner{2-4}``, ``fpn_layer{2-4}``, ``top_blocks.p6 / p7``; ``rpn/fcos/fcos.py``: ``cls_tower`` /
``bbox_tower`` = ``[conv, GN, ReLU] x 4``, ``cls_logits``, ``bbox_pred``, ``centerness``, ``scales``), not from the
converter's key map. The frozen BN of the released configs is checked against the original's ``FrozenBatchNorm2d``
(``fcos_core/layers/batch_norm.py``) written out.
"""
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmkp.converters.core import (ConversionError, Layout, StateDictConverter, build_model_from_config, convert_file,
                                  target_shapes_from_model)
from mmkp.converters.fcos import FCOS_FAMILY, FCOS_R50, IMPRV_CONFIG, PAPER_CONFIG, fcos_rules

from tests.conftest import REPO

from .helpers import index_filled, key_list

PAPER, IMPRV = 'fcos_r50_fpn_1x', 'fcos_imprv_r50_fpn_1x'
CONFIGS = {PAPER: f'{REPO}/{PAPER_CONFIG}', IMPRV: f'{REPO}/{IMPRV_CONFIG}'}
FILE_NAMES = {PAPER: 'FCOS_R_50_FPN_1x.pth', IMPRV: 'FCOS_imprv_R_50_FPN_1x.pth'}
#: mmkp head names -> the original's (``FCOSHead`` attributes)
TOWERS = {'cls_convs': 'cls_tower', 'reg_convs': 'bbox_tower'}
PREDICTORS = {'conv_cls': 'cls_logits', 'conv_reg': 'bbox_pred', 'conv_centerness': 'centerness'}
#: frozen BNs of ResNet-50: the stem's, 3 per Bottleneck (3 + 4 + 6 + 3 blocks), one per stage's downsample
NUM_BNS = 1 + 3 * 16 + 4

def released_config_of(src):
    """The config the script picks for a file name (:meth:`Family.config_of_file`), None when it refuses."""
    try:
        return FCOS_FAMILY.config_of_file(src, [])
    except ConversionError:
        return None


def original_name(key):
    """The released file's key (with ``module.``) of mmkp tensor ``key``; None for ``num_batches_tracked``."""
    if key.endswith('num_batches_tracked'):
        return None
    parts = key.split('.')
    if parts[0] == 'backbone':
        if parts[1] in ('conv1', 'bn1'):  # mmdet's stem, StemWithFixedBatchNorm in the original
            return 'module.backbone.body.stem.' + '.'.join(parts[1:])
        return 'module.backbone.body.' + '.'.join(parts[1:])
    if parts[0] == 'neck':  # neck.{lateral,fpn}_convs.<i>.conv.<param>
        kind, i, param = parts[1], int(parts[2]), parts[4]
        if kind == 'lateral_convs':
            return f'module.backbone.fpn.fpn_inner{i + 2}.{param}'
        if i < 3:
            return f'module.backbone.fpn.fpn_layer{i + 2}.{param}'
        return f'module.backbone.fpn.top_blocks.p{i + 3}.{param}'
    assert parts[0] == 'bbox_head', key
    if parts[1] in TOWERS:  # bbox_head.<tower>.<i>.<conv|gn>.<param>
        i, module, param = int(parts[2]), parts[3], parts[4]
        return f'module.rpn.head.{TOWERS[parts[1]]}.{3 * i + (1 if module == "gn" else 0)}.{param}'
    if parts[1] in PREDICTORS:
        return f'module.rpn.head.{PREDICTORS[parts[1]]}.{parts[2]}'
    assert parts[1] == 'scales', key
    return f'module.rpn.head.scales.{parts[2]}.scale'


@pytest.fixture(scope='module')
def models():
    """The two released-model configs' models, built once."""
    return {name: build_model_from_config(config).eval() for name, config in CONFIGS.items()}


def test_independent_names_cover_the_key_lists(models):
    """The test's own mmkp -> original names are one to one onto each key list (shapes too, Scale aside)."""
    for name, model in models.items():
        shapes = key_list(name)['state_dict']
        assert len(shapes) == 324
        names = {}
        for key, value in model.state_dict().items():
            if original_name(key) is not None:
                names[original_name(key)] = [1] if key.endswith('.scale') else list(value.shape)
        assert names == shapes, name
        assert sum(k.endswith('num_batches_tracked') for k in model.state_dict()) == NUM_BNS
    assert key_list(PAPER)['state_dict'] == key_list(IMPRV)['state_dict']  # why the file name picks the model


def _write_release(name, tmp_path, drop=(), extra=None, file_name=None):
    """The synthetic released file as ``Checkpointer.save`` less the solver states writes it: ``{'model',
    'iteration'}``, keys under ``module.``."""
    original = index_filled(key_list(name)['state_dict'], drop)
    original.update(extra or {})
    src = tmp_path / (file_name or FILE_NAMES[name])
    torch.save({'model': original, 'iteration': 90000}, src)
    return original, src


def _wrong_values(model, original):
    """Model tensors that differ from the original tensor at their original name (``Scale``: reshaped to 0-dim;
    ``num_batches_tracked``: 0)."""
    wrong = []
    for key, value in model.state_dict().items():
        name = original_name(key)
        if name is None:
            want = torch.tensor(0, dtype=torch.long)
        elif key.endswith('.scale'):
            want = original[name].reshape(())
        else:
            want = original[name]
        if value.dtype != want.dtype or value.shape != want.shape or not torch.equal(value, want):
            wrong.append(key)
    return wrong


@pytest.mark.parametrize('name', [PAPER, IMPRV])
def test_released_file_converts_value_for_value(name, models, tmp_path):
    model = models[name]
    original, src = _write_release(name, tmp_path)
    dst = tmp_path / 'converted.pth'
    result, meta = convert_file(FCOS_FAMILY, str(src), str(dst), config=CONFIGS[name])
    assert result.layout is FCOS_R50 and meta['config'] == CONFIGS[name] and meta['source_wrapper'] == 'model'
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'} and ckpt['meta'] == meta
    model.load_state_dict(ckpt['state_dict'], strict=True)
    assert len(result.sources) == 324 and len(result.filled) == NUM_BNS and not result.dropped
    assert not result.folded and meta['converter'] == 'fcos_to_mmkp' and meta['filled'] == result.filled
    assert _wrong_values(model, original) == []
    head, neck, backbone = model.bbox_head, model.neck, model.backbone
    pairs = {  # a few by attribute, not by name
        'module.backbone.body.stem.bn1.running_var': backbone.bn1.running_var,
        'module.backbone.body.layer2.0.downsample.1.bias': backbone.layer2[0].downsample[1].bias,
        'module.backbone.body.layer3.5.conv2.weight': backbone.layer3[5].conv2.weight,
        'module.backbone.fpn.fpn_inner2.weight': neck.lateral_convs[0].conv.weight,
        'module.backbone.fpn.fpn_layer4.bias': neck.fpn_convs[2].conv.bias,
        'module.backbone.fpn.top_blocks.p7.weight': neck.fpn_convs[4].conv.weight,
        'module.rpn.head.bbox_tower.10.weight': head.reg_convs[3].gn.weight,
        'module.rpn.head.cls_tower.6.bias': head.cls_convs[2].conv.bias,
        'module.rpn.head.centerness.weight': head.conv_centerness.weight,
        'module.rpn.head.cls_logits.bias': head.conv_cls.bias,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key
    assert model.bbox_head.centerness_on_reg is (name == IMPRV)


def test_scales_are_reshaped(models, tmp_path):
    """The original ``Scale`` (1,) tensors land in mmcv's 0-dim ones, value for value, and the meta says so."""
    model = models[PAPER]
    original, src = _write_release(PAPER, tmp_path)
    result, meta = convert_file(FCOS_FAMILY, str(src), str(tmp_path / 'c.pth'), config=CONFIGS[PAPER])
    targets = [f'bbox_head.scales.{level}.scale' for level in range(5)]
    assert result.reshaped == {t: ((1, ), ()) for t in targets}
    assert meta['reshaped'] == [f'{t} [1] -> []' for t in targets]
    model.load_state_dict(result.state_dict, strict=True)
    for level in range(5):
        got = model.bbox_head.scales[level].scale
        want = original[f'module.rpn.head.scales.{level}.scale']
        assert got.shape == () and want.shape == (1, ) and got.item() == want.item() != 0


def test_core_reshape_hook():
    """``Layout.reshapes`` on a toy: the same elements in the target's shape; refused when the counts differ or the
    target matches no pattern; key-list shapes come out as the target's."""
    shapes = {'a.scale': (), 'a.w': (6, ), 'b.w': (2, 3)}
    layout = Layout(name='toy', original='example/toy@0000000 toy.py', rules=[(r'^(a|b)\.', r'\1.')],
                    reshapes=[r'^a\.'])
    source = {'a.scale': torch.tensor([2.5]), 'a.w': torch.arange(6.).reshape(2, 3), 'b.w': torch.ones(2, 3)}
    result = StateDictConverter(layout, shapes).convert(source)
    assert result.state_dict['a.scale'].shape == () and result.state_dict['a.scale'].item() == 2.5
    assert torch.equal(result.state_dict['a.w'], torch.arange(6.))
    assert result.reshaped == {'a.scale': ((1, ), ()), 'a.w': ((2, 3), (6, ))}  # b.w: equal shapes, untouched
    keys = StateDictConverter(layout, shapes).convert({'a.scale': [1], 'a.w': [3, 2], 'b.w': [2, 3]})
    assert keys.state_dict['a.scale'] == [] and keys.state_dict['a.w'] == [6] and keys.state_dict['b.w'] == [2, 3]
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'module.a.scale' has shape [2] (2 elements), "
                                                        "its target 'a.scale' has shape [] (1 elements): cannot be "
                                                        "reshaped")):
        StateDictConverter(layout, shapes).convert({'module.a.scale': torch.zeros(2), 'a.w': torch.zeros(6),
                                                    'b.w': torch.zeros(2, 3)})
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'b.w' has shape [6], its target 'b.w' has "
                                                        "shape [2, 3]")):
        StateDictConverter(layout, shapes).convert(dict(source, **{'b.w': torch.zeros(6)}))
    with pytest.raises(re.error):
        Layout(name='bad', original='', rules=[], reshapes=['('])


def test_frozen_bn_computes_the_original(models, tmp_path):
    """The released configs' frozen BN (eval, eps=0) computes ``FrozenBatchNorm2d``: ``x * w / sqrt(v) + b -
    m * w / sqrt(v)``; with small variances mmdet's default eps=1e-5 would not."""
    gen = torch.Generator().manual_seed(0)
    stats = {f'module.backbone.body.stem.bn1.{t}': f(64) for t, f in (
        ('weight', lambda n: torch.randn(n, generator=gen)), ('bias', lambda n: torch.randn(n, generator=gen)),
        ('running_mean', lambda n: torch.randn(n, generator=gen)),
        ('running_var', lambda n: torch.rand(n, generator=gen) * 1e-4 + 1e-5))}
    original, src = _write_release(PAPER, tmp_path, extra=stats)
    result, _ = convert_file(FCOS_FAMILY, str(src), str(tmp_path / 'c.pth'), config=CONFIGS[PAPER])
    for name, model in models.items():
        model.load_state_dict(result.state_dict, strict=True)
        bn = model.backbone.bn1
        x = torch.randn(2, 64, 5, 7, generator=gen)
        w, b, m, v = (original[f'module.backbone.body.stem.bn1.{t}'].reshape(1, -1, 1, 1)
                      for t in ('weight', 'bias', 'running_mean', 'running_var'))
        scale = w * v.rsqrt()
        want = x * scale + (b - m * scale)
        with torch.no_grad():
            got = bn(x)
            with_eps = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, 1e-5)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # float32 rounding of values up to ~1e3
        assert (with_eps - want).abs().max() > 1e-2, name  # the eps matters here: the check can fail


def test_file_names_pick_the_released_config():
    assert released_config_of('/x/FCOS_imprv_R_50_FPN_1x.pth') == IMPRV_CONFIG
    assert released_config_of('fcos_imprv_r50.pth') == IMPRV_CONFIG
    assert released_config_of('/x/FCOS_R_50_FPN_1x.pth') == PAPER_CONFIG
    assert released_config_of('weights.pth') is None
    assert FCOS_FAMILY.released_config(FCOS_R50) == PAPER_CONFIG


# --- refusals (shapes only: the key list itself) ---


@pytest.fixture(scope='module')
def shapes(models):
    return target_shapes_from_model(models[PAPER])


def test_refuses_an_unmapped_key(shapes):
    source = dict(key_list(PAPER)['state_dict'])
    source['module.rpn.head.cls_tower.12.weight'] = [256, 256, 3, 3]  # a fifth tower conv
    with pytest.raises(ConversionError, match=r"FCOS_R_50_FPN_1x\.pth \(read as the FCOS R-50-FPN .* layout by "
                       r"fcos_to_mmkp\): 1 key\(s\) match no rule: 'module\.rpn\.head\.cls_tower\.12\.weight'"):
        FCOS_FAMILY.converter(shapes).convert(source, 'FCOS_R_50_FPN_1x.pth')
    source = dict(key_list(PAPER)['state_dict'])
    source['module.backbone.body.layer3.6.conv1.weight'] = [256, 1024, 1, 1]  # a ResNet-101 block
    with pytest.raises(ConversionError, match=r"match no rule: 'module\.backbone\.body\.layer3\.6\.conv1\.weight'"):
        FCOS_FAMILY.converter(shapes).convert(source, 'FCOS_R_50_FPN_1x.pth')


def test_refuses_a_missing_key(shapes):
    source = dict(key_list(PAPER)['state_dict'])
    del source['module.rpn.head.centerness.bias']
    with pytest.raises(ConversionError, match=r"1 key\(s\) of the model are filled by no source key: "
                       r"'bbox_head\.conv_centerness\.bias'"):
        FCOS_FAMILY.converter(shapes).convert(source, 'FCOS_R_50_FPN_1x.pth')


def test_refuses_a_wrong_shape(shapes):
    source = dict(key_list(PAPER)['state_dict'])
    source['module.rpn.head.cls_logits.weight'] = [81, 256, 3, 3]
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'module.rpn.head.cls_logits.weight' has "
                                                        "shape [81, 256, 3, 3], its target 'bbox_head.conv_cls."
                                                        "weight' has shape [80, 256, 3, 3]")):
        FCOS_FAMILY.converter(shapes).convert(source, 'FCOS_R_50_FPN_1x.pth')
    source = dict(key_list(PAPER)['state_dict'])
    source['module.rpn.head.scales.3.scale'] = [2]  # reshapable only with one element
    with pytest.raises(ConversionError, match=re.escape("'module.rpn.head.scales.3.scale' has shape [2] (2 elements), "
                                                        "its target 'bbox_head.scales.3.scale' has shape [] (1 "
                                                        "elements): cannot be reshaped")):
        FCOS_FAMILY.converter(shapes).convert(source, 'FCOS_R_50_FPN_1x.pth')


def test_rules_come_from_the_head_key_map():
    """One exact rule per key of ``original_fcos_key_map`` (the single statement of the names)."""
    from mmkp.models.dense_heads import original_fcos_key_map
    key_map = original_fcos_key_map()
    assert len(FCOS_R50.rules) == len(key_map) == 324
    assert all(FCOS_R50.map_key(src) == (True, dst) for src, dst in key_map.items())
    assert len(fcos_rules(depth=101)) == 324 + 17 * 15  # 17 more Bottlenecks of 3 convs + 3 x 4 BN tensors


def test_script_converts_or_refuses_naming_the_key(tmp_path):
    """``fcos_to_mmkp.py SRC DST``: the imprv file name picks the imprv config; a name that names neither model is
    refused without ``--config``; a missing key is refused naming it and nothing is written."""
    script = f'{REPO}/tools/model_converters/fcos_to_mmkp.py'
    _, src = _write_release(IMPRV, tmp_path)
    dst = tmp_path / 'fcos_imprv.pth'
    proc = subprocess.run([sys.executable, script, str(src), str(dst)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '324 tensors' in proc.stdout and IMPRV_CONFIG.split('/')[-1] in proc.stdout
    assert f'{NUM_BNS} num_batches_tracked' in proc.stdout and '5 tensors reshaped' in proc.stdout
    ckpt = torch.load(dst, weights_only=True)
    assert len(ckpt['state_dict']) == 324 + NUM_BNS and ckpt['meta']['config'].endswith(IMPRV_CONFIG)
    _, src = _write_release(PAPER, tmp_path, drop=[r'bbox_pred\.bias$'], file_name='weights.pth')
    refused = tmp_path / 'refused.pth'
    proc = subprocess.run([sys.executable, script, str(src), str(refused)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1 and not refused.exists() and 'pass the config (--config)' in proc.stderr
    proc = subprocess.run([sys.executable, script, str(src), str(refused), '--config', CONFIGS[PAPER]],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and not refused.exists()
    assert "'bbox_head.conv_reg.bias'" in proc.stderr
