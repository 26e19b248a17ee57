"""The CenterNet keypoint-triplet converter on synthetic originals built from the released files' key lists.

As ``test_cornernet_converters.py``: every tensor of a synthetic original holds values that tell which original key
it was (``helpers.index_filled``); it is written as the released files are (a bare state dict, ``module.`` keys),
converted with the family's function, loaded with ``strict=True`` into the model of the released-model config, and
every tensor of the model is compared with the original tensor that :func:`triplet_original_name` (written here from
the original modules' attribute names, independently of the converter) says it must be. The CenterNet-104 (210 M
parameters) and CenterNet-52 models are built once for the module.
"""
import re
import subprocess
import sys

import pytest
import torch

from mmkp.converters import ConversionError, build_model_from_config, convert_file
from mmkp.converters.centernet_triplet import (CENTERNET_52, CENTERNET_104, CENTERNET_TRIPLET_FAMILY,
                                               StackCountConverter)
from tests.conftest import REPO

from .helpers import ORIG, index_filled, key_list, original_name

C104 = 'centernet_duan_centernet104'
C52 = 'centernet_duan_centernet52'
CFG104 = f'{REPO}/configs/centernet_triplet/centernet-triplet_hourglass104_released-480k_coco.py'
CFG52 = f'{REPO}/configs/centernet_triplet/centernet-triplet_hourglass52_released-480k_coco.py'
SCRIPT = f'{REPO}/tools/model_converters/centernet_triplet_to_mmkp.py'

#: mmkp head key -> Duankaiwen/CenterNet@3ad3a10 key (without ``module.``), first match wins. Written from the
#: original modules (``models/CenterNet-104.py``: ``pool`` with ``p_conv1 / p_bn1 / conv1 / bn1 / P1_look_conv /
#: P2_look_conv``, ``pool_cross``; ``kp.py``: ``{tl,br,ct}_cnvs``, ``{tl,br,ct}_heats``, ``{tl,br}_tags``,
#: ``{tl,br,ct}_regrs``) and the mmkp modules' attribute names, not from the converter.
_HEAD_TO_ORIGINAL = [
    (r'^bbox_head\.(tl|br)_modules\.(\d)\.p([12])_look_conv\.', r'\1_cnvs.\2.P\3_look_conv.'),
    (r'^bbox_head\.(tl|br|ct)_modules\.(\d)\.p_conv1\.conv\.', r'\1_cnvs.\2.p_conv1.'),
    (r'^bbox_head\.(tl|br|ct)_modules\.(\d)\.p_conv1\.bn\.', r'\1_cnvs.\2.p_bn1.'),
    (r'^bbox_head\.(tl|br|ct)_modules\.(\d)\.conv1\.conv\.', r'\1_cnvs.\2.conv1.'),
    (r'^bbox_head\.(tl|br|ct)_modules\.(\d)\.conv1\.bn\.', r'\1_cnvs.\2.bn1.'),
    (r'^bbox_head\.(tl|br|ct)_modules\.', r'\1_cnvs.'),
    (r'^bbox_head\.(tl|br|ct)_offs\.', r'\1_regrs.'),
    (r'^bbox_head\.', ''),
]


def triplet_original_name(key):
    """The key (with ``module.``) holding mmkp tensor ``key`` in a CenterNet-{52,104} file: the backbone as the
    princeton-vl/CornerNet file (``helpers.original_name``: the same ``kp.py`` backbone), the head from above."""
    if key.startswith('backbone.'):
        return original_name(key, ORIG)
    for pattern, repl in _HEAD_TO_ORIGINAL:
        if re.search(pattern, key):
            return 'module.' + re.sub(pattern, repl, key, count=1)
    raise AssertionError(f'no original name for {key}')


@pytest.fixture(scope='module')
def model104():
    return build_model_from_config(CFG104).eval()


@pytest.fixture(scope='module')
def model52():
    return build_model_from_config(CFG52).eval()


@pytest.fixture(scope='module')
def shapes104(model104):
    return {k: tuple(v.shape) for k, v in model104.state_dict().items()}


@pytest.fixture(scope='module')
def shapes52(model52):
    return {k: tuple(v.shape) for k, v in model52.state_dict().items()}


def test_independent_names_cover_the_key_lists(model104, model52):
    """The test's own mmkp -> original names are one to one onto each key list (so they can judge the converter)."""
    for model, name, count in ((model104, C104, 1260), (model52, C52, 630)):
        listed = key_list(name)['state_dict']
        names = {triplet_original_name(k): list(v.shape) for k, v in model.state_dict().items()}
        assert len(names) == len(model.state_dict()) == count == len(listed)
        assert names == listed, name
    assert sum(p.numel() for p in model104.parameters()) == key_list(C104)['num_params'] == 210062960
    assert sum(p.numel() for p in model52.parameters()) == key_list(C52)['num_params'] == 104844152


def _convert_and_load(model, name, config, tmp_path):
    """Write the synthetic original of key list ``name``, convert it as the script does, load it strictly."""
    original = index_filled(key_list(name)['state_dict'])
    src, dst = tmp_path / f'{name}.pkl', tmp_path / 'converted.pth'
    torch.save(original, src)  # as the released files: a bare state dict with 'module.' keys
    result, meta = convert_file(CENTERNET_TRIPLET_FAMILY, str(src), str(dst), config)
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'} and ckpt['meta'] == meta
    model.load_state_dict(ckpt['state_dict'], strict=True)
    return original, result, meta


def _assert_every_value_traced(model, original):
    """Every model tensor equals, value and dtype, the original tensor at its original name."""
    wrong = []
    for key, value in model.state_dict().items():
        source = original[triplet_original_name(key)]
        if value.dtype != source.dtype or not torch.equal(value, source):
            wrong.append(key)
    assert not wrong, f'tensors not where the original puts them: {wrong[:10]}'


def test_centernet104_file_converts_value_for_value(model104, tmp_path):
    original, result, meta = _convert_and_load(model104, C104, CFG104, tmp_path)
    assert result.layout is CENTERNET_104 and len(result.sources) == 1260
    assert result.filled == [] and result.dropped == []
    assert meta['layout'] == 'CenterNet CenterNet-104_480000.pkl' and meta['converter'] == 'centernet_triplet_to_mmkp'
    assert meta['original'] == 'Duankaiwen/CenterNet@3ad3a10 models/CenterNet-104.py (models/py_utils/kp.py)'
    assert meta['source_wrapper'] == 'bare' and meta['source'] == f'{C104}.pkl'
    _assert_every_value_traced(model104, original)
    # a few by hand, through the modules: cascade pooling's look convs, the center branch, the inter-stack layers
    head, backbone = model104.bbox_head, model104.backbone
    pairs = {
        'module.tl_cnvs.1.P1_look_conv.weight': head.tl_modules[1].p1_look_conv.weight,
        'module.br_cnvs.0.P2_look_conv.weight': head.br_modules[0].p2_look_conv.weight,
        'module.br_cnvs.1.look_conv2.bn.running_var': head.br_modules[1].look_conv2.bn.running_var,
        'module.ct_cnvs.1.p_bn1.running_mean': head.ct_modules[1].p_conv1.bn.running_mean,
        'module.ct_cnvs.0.bn1.num_batches_tracked': head.ct_modules[0].conv1.bn.num_batches_tracked,
        'module.ct_cnvs.0.p2_conv1.conv.weight': head.ct_modules[0].p2_conv1.conv.weight,
        'module.ct_heats.1.1.bias': head.ct_heats[1][1].bias,
        'module.ct_regrs.0.1.weight': head.ct_offs[0][1].weight,
        'module.tl_regrs.1.1.bias': head.tl_offs[1][1].bias,
        'module.br_tags.0.0.conv.bias': head.br_tags[0][0].conv.bias,
        'module.kps.1.low2.low3.0.conv1.weight': backbone.hourglass_modules[1].low2.low3[0].conv1.weight,
        'module.inters_.0.1.bias': backbone.conv1x1s[0].bn.bias,
        'module.cnvs_.0.0.weight': backbone.remap_convs[0].conv.weight,
        'module.pre.1.skip.1.running_mean': backbone.stem[1][0].downsample[1].running_mean,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key
    assert head.ct_heats[1][1].bias.shape == (80, ) and head.ct_offs[0][1].weight.shape == (2, 256, 1, 1)


def test_centernet52_file_converts_value_for_value(model52, tmp_path):
    original, result, meta = _convert_and_load(model52, C52, CFG52, tmp_path)
    assert result.layout is CENTERNET_52 and len(result.sources) == 630
    assert result.filled == [] and result.dropped == []
    assert meta['layout'] == 'CenterNet CenterNet-52_480000.pkl'
    assert meta['original'] == 'Duankaiwen/CenterNet@3ad3a10 models/CenterNet-52.py (models/py_utils/kp.py)'
    _assert_every_value_traced(model52, original)
    head, backbone = model52.bbox_head, model52.backbone
    pairs = {
        'module.tl_cnvs.0.P2_look_conv.weight': head.tl_modules[0].p2_look_conv.weight,
        'module.ct_cnvs.0.conv1.weight': head.ct_modules[0].conv1.conv.weight,
        'module.ct_regrs.0.0.conv.bias': head.ct_offs[0][0].conv.bias,
        'module.cnvs.0.bn.running_var': backbone.out_convs[0].bn.running_var,
        'module.kps.0.up1.1.bn2.weight': backbone.hourglass_modules[0].up1[1].bn2.weight,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key
    assert len(backbone.hourglass_modules) == len(head.ct_heats) == 1


# --- the layout (and so the config) by the number of stacks ---


def test_layout_and_config_by_stacks():
    family = CENTERNET_TRIPLET_FAMILY
    keys104, keys52 = list(key_list(C104)['state_dict']), list(key_list(C52)['state_dict'])
    assert set(keys52) < set(keys104)  # why signatures cannot tell them apart
    assert family.layout_of(keys104) is CENTERNET_104 and family.layout_of(keys52) is CENTERNET_52
    assert family.layout_of([k[len('module.'):] for k in keys52]) is CENTERNET_52
    assert family.released_config(CENTERNET_104) == family.default_config == CFG104[len(REPO) + 1:]
    assert family.released_config(CENTERNET_52) == CFG52[len(REPO) + 1:]
    three = keys104 + ['module.kps.2.up1.0.conv1.weight']
    with pytest.raises(ConversionError, match=r"x\.pkl: holds 3 hourglass stack\(s\) .*CenterNet "
                       r"CenterNet-104_480000\.pkl: 2, CenterNet CenterNet-52_480000\.pkl: 1"):
        family.layout_of(three, 'x.pkl')
    with pytest.raises(ConversionError, match=r"holds 0 hourglass stack\(s\)"):
        family.layout_of(list(key_list('cornernetlite_cornernet')['state_dict']), 'CornerNet_500000.pkl')
    with pytest.raises(ValueError, match='one distinct count per layout'):
        StackCountConverter((CENTERNET_104, CENTERNET_52), (2, 2), {})


# --- refusals, each naming the key (shapes only: the key lists themselves, no tensors) ---


def test_key_lists_convert_one_to_one(shapes104, shapes52):
    for shapes, name, count, layout in ((shapes104, C104, 1260, CENTERNET_104), (shapes52, C52, 630, CENTERNET_52)):
        result = CENTERNET_TRIPLET_FAMILY.converter(shapes).convert(key_list(name)['state_dict'], f'{name}.pkl')
        assert len(result.sources) == count and not result.filled and not result.dropped and not result.folded
        assert result.layout is layout


def test_refuses_an_unmapped_key(shapes104):
    converter = CENTERNET_TRIPLET_FAMILY.converter(shapes104)
    listed = dict(key_list(C104)['state_dict'])
    extra = dict(listed, **{'module.ct_tags.0.1.weight': [1, 256, 1, 1]})  # centers have no embedding
    with pytest.raises(ConversionError, match=r"CenterNet-104_480000\.pkl \(read as the CenterNet "
                       r"CenterNet-104_480000\.pkl layout by centernet_triplet_to_mmkp\): 1 key\(s\) match no rule: "
                       r"'module\.ct_tags\.0\.1\.weight'"):
        converter.convert(extra, 'CenterNet-104_480000.pkl')
    extra = dict(listed, **{'module.ct_heats.0.2.weight': [80, 80, 1, 1]})  # a third layer the model lacks
    with pytest.raises(ConversionError, match=re.escape(
            "map to names the model does not have: 'module.ct_heats.0.2.weight -> bbox_head.ct_heats.0.2.weight'")):
        converter.convert(extra, 'CenterNet-104_480000.pkl')


def test_refuses_a_missing_key(shapes104, shapes52):
    listed = dict(key_list(C104)['state_dict'])
    del listed['module.ct_regrs.1.1.bias']
    with pytest.raises(ConversionError, match=r"1 key\(s\) of the model are filled by no source key: "
                       r"'bbox_head\.ct_offs\.1\.1\.bias'"):
        CENTERNET_TRIPLET_FAMILY.converter(shapes104).convert(listed, 'CenterNet-104_480000.pkl')
    listed = dict(key_list(C52)['state_dict'])
    del listed['module.tl_cnvs.0.P1_look_conv.weight']
    with pytest.raises(ConversionError, match=r"CenterNet-52_480000\.pkl layout .*filled by no source key: "
                       r"'bbox_head\.tl_modules\.0\.p1_look_conv\.weight'"):
        CENTERNET_TRIPLET_FAMILY.converter(shapes52).convert(listed, 'CenterNet-52_480000.pkl')


def test_refuses_a_wrong_shape(shapes104):
    listed = dict(key_list(C104)['state_dict'])
    listed['module.ct_heats.1.1.weight'] = [81, 256, 1, 1]  # 81 classes: a background channel
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'module.ct_heats.1.1.weight' has shape "
                                                        "[81, 256, 1, 1], its target 'bbox_head.ct_heats.1.1.weight' "
                                                        "has shape [80, 256, 1, 1]")):
        CENTERNET_TRIPLET_FAMILY.converter(shapes104).convert(listed, 'CenterNet-104_480000.pkl')


def test_refuses_a_file_for_the_other_model(shapes104, shapes52):
    """With an explicit config of the other model, core's checks refuse, naming the keys."""
    with pytest.raises(ConversionError, match=r"CenterNet-52_480000\.pkl layout .*key\(s\) of the model are filled "
                       r"by no source key: 'backbone\.hourglass_modules\.1\."):
        CENTERNET_TRIPLET_FAMILY.converter(shapes104).convert(key_list(C52)['state_dict'], '52.pkl')
    with pytest.raises(ConversionError, match=r"CenterNet-104_480000\.pkl layout .*map to names the model does not "
                       r"have: 'module\.kps\.1\."):
        CENTERNET_TRIPLET_FAMILY.converter(shapes52).convert(key_list(C104)['state_dict'], '104.pkl')


# --- the command line, end to end ---


def _run(*args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_script_picks_the_config_converts_or_refuses(tmp_path, model52):
    # the synthetic originals are small on disk: large tensors are expanded scalars
    src52, src104 = tmp_path / 'CenterNet-52_480000.pkl', tmp_path / 'CenterNet-104_480000.pkl'
    original52 = index_filled(key_list(C52)['state_dict'])
    torch.save(original52, src52)
    torch.save(index_filled(key_list(C104)['state_dict']), src104)
    dst = tmp_path / 'centernet52.pth'
    proc = _run(src52, dst, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '(CenterNet CenterNet-52_480000.pkl layout)' in proc.stdout
    assert f'630 tensors of {src52}' in proc.stdout and 'hourglass52_released-480k_coco.py' in proc.stdout
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['config'] == CFG52 and ckpt['meta']['layout'] == CENTERNET_52.name
    model52.load_state_dict(ckpt['state_dict'], strict=True)
    _assert_every_value_traced(model52, original52)
    # the 104 file: its own config, without --config
    proc = _run(src104, tmp_path / 'centernet104.pth', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'1260 tensors of {src104}' in proc.stdout and 'hourglass104_released-480k_coco.py' in proc.stdout
    assert len(torch.load(tmp_path / 'centernet104.pth', weights_only=True)['state_dict']) == 1260
    # a broken file: refused, naming the key, nothing written
    torch.save(index_filled(key_list(C52)['state_dict'], drop=[r'^module\.ct_heats\.0\.1\.bias$']), src52)
    refused = tmp_path / 'refused.pth'
    proc = _run(src52, refused, cwd=tmp_path)
    assert proc.returncode == 1 and not refused.exists()
    assert "filled by no source key: 'bbox_head.ct_heats.0.1.bias'" in proc.stderr
    # an explicit --config is used as given: the 104 file against the 52 model is refused
    proc = _run(src104, refused, '--config', CFG52, cwd=tmp_path)
    assert proc.returncode == 1 and not refused.exists()
    assert "map to names the model does not have: 'module.kps.1." in proc.stderr


# --- the released-model configs reproduce the original's test settings (Duankaiwen/CenterNet@3ad3a10 test/coco.py)


@pytest.mark.parametrize('config, stacks', [(CFG104, 2), (CFG52, 1)])
def test_released_config_test_settings(config, stacks):
    from mmengine.config import Config

    from mmkp.utils import get_data_root
    get_data_root(set_env=True)
    cfg = Config.fromfile(config)
    assert cfg.model.backbone.num_stacks == cfg.model.bbox_head.num_stacks == stacks
    pre = cfg.model.data_preprocessor
    # db/coco.py: BGR mean / std on [0, 1] images
    assert pre.mean == pytest.approx([255 * m for m in (0.40789654, 0.44719302, 0.47026115)], abs=1e-4)
    assert pre.std == pytest.approx([255 * s for s in (0.28863828, 0.27408164, 0.27809835)], abs=1e-4)
    assert pre.bgr_to_rgb is False and pre.get('pad_size_divisor', 1) == 1
    dec = cfg.model.test_cfg.decoder
    got = (dec.type, dec.topk, dec.center_topk, dec.local_maximum_kernel, dec.ae_threshold, dec.num_dets,
           dec.small_box_area, dec.outside_margin, dec.get('ratio'))
    assert got == ('TripletDecoder', 70, 70, 3, 0.5, 1000, 22500, 5.0, None)
    nms = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1)
    assert cfg.model.test_cfg.nms == nms and cfg.model.test_cfg.max_per_img == 100
    assert cfg.test_dataloader.batch_size == 1
    crop = cfg.test_dataloader.dataset.pipeline[1]
    assert crop.type == 'RandomCenterCropPad' and crop.test_pad_mode == ['logical_or', 127]
    assert crop.mean == [0, 0, 0] and crop.std == [1, 1, 1]
    # `--tta`: the image and its flip (the original always flips), one soft-NMS of the pooled views
    assert cfg.tta_model.type == 'CornerNetTTAModel' and cfg.tta_model.tta_cfg.nms == nms
    assert cfg.tta_model.tta_cfg.max_per_img == 100
    flips = cfg.tta_pipeline[1].transforms[0]
    assert [f['prob'] for f in flips] == [1., 0.] and all(f['type'] == 'RandomFlip' for f in flips)
