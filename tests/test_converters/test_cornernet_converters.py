"""The CornerNet and CornerNet-Squeeze converters on synthetic originals built from the released files' key lists.

Each synthetic original holds, in every tensor, values that tell which original key it was (``helpers.index_filled``).
It is written to disk as the released file is (a bare state dict, ``module.`` keys), converted with the family
script's function (:func:`mmkp.converters.core.convert_file`), loaded with ``strict=True`` into the model built from
the released-model config, and every tensor of the model is compared with the original tensor that
``helpers.original_name`` (written independently of the converter) says it must be. The Hourglass-104 model
(201 M parameters) is built once for the module.
"""
import re
import subprocess
import sys

import cv2
import pytest
import torch

from mmkp.converters import (CORNERNET_FAMILY, CORNERNET_LITE, CORNERNET_ORIGINAL, CORNERNET_SQUEEZE,
                             CORNERNET_SQUEEZE_FAMILY, ConversionError, build_model_from_config, convert_file,
                             target_shapes_from_config)
from tests.conftest import COCO128, REPO

from .helpers import LITE, ORIG, SQUEEZE, index_filled, key_list, original_name

CORNERNET_CFG = f'{REPO}/configs/cornernet/cornernet_hourglass104_released-500k_coco.py'
SQUEEZE_CFG = f'{REPO}/configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze_released-500k_coco.py'
NUM_BATCHES_TRACKED = r'\.num_batches_tracked$'


@pytest.fixture(scope='module')
def cornernet():
    return build_model_from_config(CORNERNET_CFG).eval()


@pytest.fixture(scope='module')
def squeeze():
    return build_model_from_config(SQUEEZE_CFG).eval()


def _convert_and_load(family, model, name, tmp_path, drop=()):
    """Write the synthetic original of key list ``name``, convert it as the script does, load it strictly."""
    shapes = key_list(name)['state_dict']
    original = index_filled(shapes, drop)
    src, dst = tmp_path / 'original.pkl', tmp_path / 'converted.pth'
    torch.save(original, src)  # as the released files: a bare state dict with 'module.' keys
    config = CORNERNET_CFG if family is CORNERNET_FAMILY else SQUEEZE_CFG
    result, meta = convert_file(family, str(src), str(dst), config)
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'} and ckpt['meta'] == meta
    model.load_state_dict(ckpt['state_dict'], strict=True)
    return original, result, meta


def _assert_every_value_traced(model, original, name):
    """Every model tensor equals the original tensor at its original name (a filled buffer: 0)."""
    wrong, filled = [], []
    for key, value in model.state_dict().items():
        source = original.get(original_name(key, name))
        if source is None:
            filled.append(key)
            if not (key.endswith('num_batches_tracked') and value.item() == 0):
                wrong.append(key)
        elif value.dtype != source.dtype or not torch.equal(value, source):
            wrong.append(key)
    assert not wrong, f'tensors not where the original puts them: {wrong[:10]}'
    return filled


def test_independent_names_cover_the_key_lists(cornernet, squeeze):
    """The test's own mmkp -> original names are one to one onto each key list (so they can judge the converter)."""
    for model, name in ((cornernet, LITE), (cornernet, ORIG), (squeeze, SQUEEZE)):
        shapes = key_list(name)['state_dict']
        names = {original_name(k, name): list(v.shape) for k, v in model.state_dict().items()}
        assert names == shapes, name
    assert len(key_list(LITE)['state_dict']) == len(key_list(ORIG)['state_dict']) == 1128
    assert len(key_list(SQUEEZE)['state_dict']) == 990


def test_cornernet_lite_file_converts_value_for_value(cornernet, tmp_path):
    original, result, meta = _convert_and_load(CORNERNET_FAMILY, cornernet, LITE, tmp_path)
    assert result.layout is CORNERNET_LITE and len(result.sources) == 1128 and result.filled == []
    assert meta['layout'] == 'CornerNet-Lite CornerNet_500000.pkl' and meta['converter'] == 'cornernet_to_mmkp'
    assert meta['original'] == 'princeton-vl/CornerNet-Lite@6a54505 core/models/CornerNet.py'
    assert meta['source_wrapper'] == 'bare' and meta['source'] == 'original.pkl'
    assert _assert_every_value_traced(cornernet, original, LITE) == []
    # a few by hand, through the modules: the pooling module's p_bn1 / bn1, the merge layers, a prediction module
    head, backbone = cornernet.bbox_head, cornernet.backbone
    pairs = {
        'module.tl_modules.0.p_bn1.running_var': head.tl_modules[0].p_conv1.bn.running_var,
        'module.br_modules.1.bn1.weight': head.br_modules[1].conv1.bn.weight,
        'module.br_modules.1.conv1.weight': head.br_modules[1].conv1.conv.weight,
        'module.tl_modules.1.p2_conv1.conv.weight': head.tl_modules[1].p2_conv1.conv.weight,
        'module.tl_heats.1.1.bias': head.tl_heats[1][1].bias,
        'module.br_offs.0.0.conv.weight': head.br_offs[0][0].conv.weight,
        'module.hg.pre.1.skip.1.running_mean': backbone.stem[1][0].downsample[1].running_mean,
        'module.hg.inters_.0.1.bias': backbone.conv1x1s[0].bn.bias,
        'module.hg.cnvs_.0.0.weight': backbone.remap_convs[0].conv.weight,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key
    assert head.tl_heats[1][1].bias.shape == (80, )
    assert torch.equal(head.tl_heats[1][1].bias, original['module.tl_heats.1.1.bias'])


def test_cornernet_original_repository_file_without_num_batches_tracked(cornernet, tmp_path):
    """princeton-vl/CornerNet's file (PyTorch 0.4.0: no num_batches_tracked); the same model loads all of it."""
    original, result, meta = _convert_and_load(CORNERNET_FAMILY, cornernet, ORIG, tmp_path, drop=[NUM_BATCHES_TRACKED])
    assert result.layout is CORNERNET_ORIGINAL and len(original) == 1128 - 180 == len(result.sources)
    assert meta['original'] == 'princeton-vl/CornerNet@e5c39a3 models/CornerNet.py (models/py_utils/kp.py)'
    filled = _assert_every_value_traced(cornernet, original, ORIG)
    assert len(filled) == 180 and filled == meta['filled'] == result.filled
    assert torch.equal(cornernet.bbox_head.br_offs[1][1].weight, original['module.br_regrs.1.1.weight'])
    assert torch.equal(cornernet.bbox_head.tl_modules[0].p_conv1.conv.weight,
                       original['module.tl_cnvs.0.p_conv1.weight'])
    assert torch.equal(cornernet.backbone.hourglass_modules[1].low2.low3[0].conv1.weight,
                       original['module.kps.1.low2.low3.0.conv1.weight'])


def test_cornernet_squeeze_file_converts_value_for_value(squeeze, tmp_path):
    original, result, meta = _convert_and_load(CORNERNET_SQUEEZE_FAMILY, squeeze, SQUEEZE, tmp_path)
    assert result.layout is CORNERNET_SQUEEZE and len(result.sources) == 990 and result.filled == []
    assert meta['original'] == 'princeton-vl/CornerNet-Lite@6a54505 core/models/CornerNet_Squeeze.py'
    assert _assert_every_value_traced(squeeze, original, SQUEEZE) == []
    head, backbone = squeeze.bbox_head, squeeze.backbone
    assert head.tl_heats[0][0].conv.kernel_size == (1, 1)  # Squeeze's 1x1 prediction modules
    pairs = {
        'module.hg.pre.2.skip.0.weight': backbone.stem[2].downsample[0].weight,
        'module.hg.hgs.1.low2.up2.bias': backbone.hourglass_modules[1].low2.up2.bias,
        'module.tl_heats.0.0.conv.weight': head.tl_heats[0][0].conv.weight,
        'module.br_modules.0.p_bn1.num_batches_tracked': head.br_modules[0].p_conv1.bn.num_batches_tracked,
    }
    for key, tensor in pairs.items():
        assert torch.equal(tensor, original[key]), key


# --- refusals on the real families (shapes only: the key lists themselves, no tensors) ---


@pytest.fixture(scope='module')
def cornernet_shapes():
    return target_shapes_from_config(CORNERNET_CFG)


@pytest.mark.parametrize('name', [LITE, ORIG])
def test_key_lists_convert_one_to_one(name, cornernet_shapes):
    result = CORNERNET_FAMILY.converter(cornernet_shapes).convert(key_list(name)['state_dict'], f'{name}.pkl')
    assert len(result.sources) == 1128 and not result.filled and not result.dropped


def test_refuses_an_unknown_key(cornernet_shapes):
    shapes = dict(key_list(LITE)['state_dict'])
    shapes['module.tl_heats.0.2.weight'] = [80, 80, 1, 1]  # a third layer the model does not have
    with pytest.raises(ConversionError, match=r"CornerNet_500000\.pkl .*map to names the model does not have: "
                       r"'module\.tl_heats\.0\.2\.weight -> bbox_head\.tl_heats\.0\.2\.weight'"):
        CORNERNET_FAMILY.converter(cornernet_shapes).convert(shapes, 'CornerNet_500000.pkl')
    shapes = dict(key_list(LITE)['state_dict'])
    shapes['module.tl_attns.0.weight'] = [1]
    with pytest.raises(ConversionError, match=r"match no rule: 'module\.tl_attns\.0\.weight'"):
        CORNERNET_FAMILY.converter(cornernet_shapes).convert(shapes, 'CornerNet_500000.pkl')


def test_refuses_a_missing_key(cornernet_shapes):
    shapes = dict(key_list(ORIG)['state_dict'])
    del shapes['module.br_regrs.1.1.bias']
    with pytest.raises(ConversionError, match=r"CornerNet_500000\.pkl \(read as the CornerNet CornerNet_500000\.pkl "
                       r"layout by cornernet_to_mmkp\): 1 key\(s\) of the model are filled by no source key: "
                       r"'bbox_head\.br_offs\.1\.1\.bias'"):
        CORNERNET_FAMILY.converter(cornernet_shapes).convert(shapes, 'CornerNet_500000.pkl')


def test_refuses_a_wrong_shape(cornernet_shapes):
    shapes = dict(key_list(LITE)['state_dict'])
    shapes['module.tl_heats.1.1.weight'] = [81, 256, 1, 1]  # 81 classes: a background channel
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'module.tl_heats.1.1.weight' has shape "
                                                        "[81, 256, 1, 1], its target 'bbox_head.tl_heats.1.1.weight' "
                                                        "has shape [80, 256, 1, 1]")):
        CORNERNET_FAMILY.converter(cornernet_shapes).convert(shapes, 'CornerNet_500000.pkl')


def test_refuses_the_squeeze_file_for_cornernet(cornernet_shapes):
    with pytest.raises(ConversionError, match=r"234 key\(s\) map to names the model does not "
                       r"have: 'module\.hg\.pre\.2\.conv1\.weight -> backbone\.stem\.2\.0\.conv1\.weight'"):
        CORNERNET_FAMILY.converter(cornernet_shapes).convert(key_list(SQUEEZE)['state_dict'], 'squeeze.pkl')


def test_script_writes_the_file_or_refuses_naming_the_key(tmp_path):
    shapes = key_list(SQUEEZE)['state_dict']
    src, dst = tmp_path / 'CornerNet_Squeeze_500000.pkl', tmp_path / 'squeeze.pth'
    torch.save(index_filled(shapes), src)
    script = f'{REPO}/tools/model_converters/cornernet_squeeze_to_mmkp.py'
    proc = subprocess.run([sys.executable, script, str(src), str(dst)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '990 tensors' in proc.stdout and 'cornernet-squeeze_hourglass-squeeze_released-500k_coco.py' in proc.stdout
    assert len(torch.load(dst, weights_only=True)['state_dict']) == 990
    broken = index_filled(shapes, drop=[r'^module\.br_offs\.0\.1\.weight$'])
    torch.save(broken, src)
    refused = tmp_path / 'refused.pth'
    proc = subprocess.run([sys.executable, script, str(src), str(refused), '--config', SQUEEZE_CFG],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and not refused.exists()
    assert "filled by no source key: 'bbox_head.br_offs.0.1.weight'" in proc.stderr


# --- the released-model configs reproduce the originals' test settings ---


@pytest.mark.parametrize('config, topk, num_dets, stride', [(CORNERNET_CFG, 100, 1000, 4), (SQUEEZE_CFG, 20, 100, 8)])
def test_released_config_test_settings(config, topk, num_dets, stride, cornernet, squeeze, coco128_root):
    from mmengine.config import Config
    from mmengine.dataset import Compose

    from mmkp.utils import get_data_root
    get_data_root(set_env=True)
    cfg = Config.fromfile(config)
    pre = cfg.model.data_preprocessor
    # core/dbs/coco.py: BGR mean / std on [0, 1] images
    assert pre.mean == pytest.approx([255 * m for m in (0.40789654, 0.44719302, 0.47026115)], abs=1e-4)
    assert pre.std == pytest.approx([255 * s for s in (0.28863828, 0.27408164, 0.27809835)], abs=1e-4)
    assert pre.bgr_to_rgb is False and pre.get('pad_size_divisor', 1) == 1
    dec = cfg.model.test_cfg.decoder
    got = (dec.topk, dec.num_dets, dec.ae_threshold, dec.local_maximum_kernel, dec.get('ratio'))
    assert got == (topk, num_dets, 0.5, 3, None)
    assert cfg.model.test_cfg.nms == dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001,
                                          method='gaussian', offset=1)
    assert cfg.model.test_cfg.max_per_img == 100 and cfg.test_dataloader.batch_size == 1
    # the zero canvas of (h | 127, w | 127) with the image in its centre
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        pipeline = Compose(cfg.test_dataloader.dataset.pipeline[:2])  # load, crop-pad
    path = f'{COCO128}/val2017/000000000139.jpg'
    h, w = cv2.imread(path).shape[:2]
    out = pipeline(dict(img_path=path, img_id=139))
    img = out['img']
    assert img.shape[:2] == (h | 127, w | 127)
    top, left = out['border'][0], out['border'][2]
    assert (top, left) == ((h | 127) // 2 - h // 2, (w | 127) // 2 - w // 2)  # crop_image: centre on centre
    assert img[:int(top)].max() == 0 and img[:, :int(left)].max() == 0
    assert torch.equal(torch.from_numpy(img[int(top):int(top) + h, int(left):int(left) + w]),
                       torch.from_numpy(cv2.imread(path).astype('float32')))
    # the decoder reads the cell -> pixel ratio off the shapes: the stem gives (inp + 1) // stride cells, the
    # original's output size; the hourglasses keep it
    model = cornernet if config == CORNERNET_CFG else squeeze
    x = torch.zeros(1, 3, h | 127, w | 127)
    with torch.no_grad():
        feat = model.backbone.stem(x)
    assert feat.shape[-2:] == (((h | 127) + 1) // stride, ((w | 127) + 1) // stride)
