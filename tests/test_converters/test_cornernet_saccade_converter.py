"""The CornerNet-Saccade converter on a synthetic original built from the released file's key list.

As ``test_cornernet_converters.py``: every tensor of the synthetic original holds values that tell which key it was
(``helpers.index_filled``); it is written as the released file (a bare state dict, ``module.`` keys), converted with
the family's function, loaded with ``strict=True`` into the model of the released-model config, and each tensor of
the model is compared with the original tensor that ``helpers.original_name`` (written independently of the
converter) says it must be.
"""
import re
import subprocess
import sys

import pytest
import torch

from mmkp.converters import ConversionError, build_model_from_config, convert_file, target_shapes_from_config
from mmkp.converters.cornernet_saccade import CORNERNET_SACCADE, CORNERNET_SACCADE_FAMILY
from tests.conftest import REPO

from .helpers import LITE, index_filled, key_list, original_name

SACCADE = 'cornernetlite_cornernet_saccade'
CFG = f'{REPO}/configs/cornernet_saccade/cornernet-saccade_hourglass54_released-500k_coco.py'


@pytest.fixture(scope='module')
def saccade():
    return build_model_from_config(CFG).eval()


@pytest.fixture(scope='module')
def shapes():
    return target_shapes_from_config(CFG)


def test_independent_names_cover_the_key_list(saccade):
    names = {original_name(k, LITE): list(v.shape) for k, v in saccade.state_dict().items()}
    assert names == key_list(SACCADE)['state_dict']
    assert len(names) == 828


def test_file_converts_value_for_value(saccade, tmp_path):
    original = index_filled(key_list(SACCADE)['state_dict'])
    src, dst = tmp_path / 'CornerNet_Saccade_500000.pkl', tmp_path / 'converted.pth'
    torch.save(original, src)
    result, meta = convert_file(CORNERNET_SACCADE_FAMILY, str(src), str(dst), CFG)
    assert result.layout is CORNERNET_SACCADE and len(result.sources) == 828 and result.filled == []
    assert meta['original'] == 'princeton-vl/CornerNet-Lite@6a54505 core/models/CornerNet_Saccade.py'
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    saccade.load_state_dict(ckpt['state_dict'], strict=True)
    wrong = [k for k, v in saccade.state_dict().items() if not torch.equal(v, original[original_name(k, LITE)])]
    assert not wrong
    head, backbone = saccade.bbox_head, saccade.backbone
    pairs = {
        'module.att_modules.2.0.1.bias': head.att_modules[2][0][1].bias,
        'module.att_modules.1.2.0.conv.weight': head.att_modules[1][2][0].conv.weight,
        'module.hg.hgs.2.low2.low2.low2.0.bn2.running_var': backbone.hourglass_modules[2].low2.low2.low2[0].bn2
        .running_var,
        'module.hg.hgs.0.low3.0.skip.0.weight': backbone.hourglass_modules[0].low3[0].downsample[0].weight,
        'module.tl_modules.2.p_bn1.bias': head.tl_modules[2].p_conv1.bn.bias,
        'module.hg.inters.1.conv2.weight': backbone.inters[1].conv2.weight,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key


def test_refusals_name_the_key(shapes):
    listed = dict(key_list(SACCADE)['state_dict'])
    converter = CORNERNET_SACCADE_FAMILY.converter(shapes)
    assert len(converter.convert(listed, 'x.pkl').sources) == 828
    wrong = dict(listed, **{'module.att_modules.0.2.0.conv.weight': [256, 384, 3, 3]})
    with pytest.raises(ConversionError, match=re.escape("'module.att_modules.0.2.0.conv.weight' has shape "
                                                        "[256, 384, 3, 3]")):
        converter.convert(wrong, 'x.pkl')
    missing = dict(listed)
    del missing['module.att_modules.1.1.1.bias']
    with pytest.raises(ConversionError, match=re.escape("'bbox_head.att_modules.1.1.1.bias'")):
        converter.convert(missing, 'x.pkl')
    extra = dict(listed, **{'module.att_modules.3.0.1.bias': [1]})
    with pytest.raises(ConversionError, match=re.escape('module.att_modules.3.0.1.bias')):
        converter.convert(extra, 'x.pkl')
    # the CornerNet file has no attention branches: refused
    with pytest.raises(ConversionError):
        converter.convert(key_list(LITE)['state_dict'], 'CornerNet_500000.pkl')


def test_script_converts_or_refuses(tmp_path):
    shapes = key_list(SACCADE)['state_dict']
    src, dst = tmp_path / 'CornerNet_Saccade_500000.pkl', tmp_path / 'saccade.pth'
    torch.save(index_filled(shapes), src)
    script = f'{REPO}/tools/model_converters/cornernet_saccade_to_mmkp.py'
    proc = subprocess.run([sys.executable, script, str(src), str(dst)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '828 tensors' in proc.stdout and 'cornernet-saccade_hourglass54_released-500k_coco.py' in proc.stdout
    torch.save(index_filled(shapes, drop=[r'^module\.att_modules\.0\.0\.1\.weight$']), src)
    refused = tmp_path / 'refused.pth'
    proc = subprocess.run([sys.executable, script, str(src), str(refused)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1 and not refused.exists()
    assert 'att_modules.0.0.1.weight' in proc.stderr
