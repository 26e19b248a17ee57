"""End to end: a synthetic released file -> the family script -> ``tools/test.py`` on the 2 smallest coco128 images.

The synthetic original is the released-model config's freshly initialised model written under the original names
(``helpers.original_name``, with ``module.``), as ``CornerNet_Squeeze_500000.pkl`` / ``CornerNet_500000.pkl`` are
laid out. Random weights give meaningless boxes, and random heatmaps do not even pair (the untrained corner pools put
the bottom-right peaks left of the top-left ones). So the last layers of the heatmap, embedding and offset modules
are set to constants: every pixel scores class 0 ('person') alike, for both corner types (the same top-K cells for
both), all embeddings and offsets are 0, and every top-left cell pairs with itself and with the cells below and
to its right. Decoding, soft-NMS and COCO evaluation then run on real boxes. The tests assert that conversion and
evaluation complete and that the boxes come back in original-image pixels. CornerNet (Hourglass-104) takes about
35 s, CornerNet-Squeeze about 20 s (1 thread).
"""
import json
import os.path as osp
import pickle
import re
import sys

import pytest
import torch

from mmkp.converters import build_model_from_config
from tests.conftest import REPO, run_tool

from .helpers import LITE, SQUEEZE, original_name

pytestmark = pytest.mark.e2e

CASES = {
    'squeeze': ('configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze_released-500k_coco.py',
                'tools/model_converters/cornernet_squeeze_to_mmkp.py', SQUEEZE, 'CornerNet_Squeeze_500000.pkl', 100),
    'cornernet': ('configs/cornernet/cornernet_hourglass104_released-500k_coco.py',
                  'tools/model_converters/cornernet_to_mmkp.py', LITE, 'CornerNet_500000.pkl', 100),
}


def _synthetic_release(config, name, path):
    torch.manual_seed(0)
    model = build_model_from_config(osp.join(REPO, config))
    original = {original_name(k, name): v for k, v in model.state_dict().items()}
    for key in original:
        if re.match(r'^module\.(tl|br)_(heats|tags|offs)\.\d\.1\.(weight|bias)$', key):
            original[key] = torch.zeros_like(original[key])
            if re.search(r'heats\.\d\.1\.bias$', key):
                original[key][1:] = -6.0  # class 0 ('person') wins everywhere, for both corner types
    torch.save(original, path)
    del model


@pytest.mark.parametrize('case', ['squeeze', 'cornernet'])
def test_convert_then_evaluate_on_coco128(case, tmp_path, coco128_root):
    config, script, name, released, max_per_img = CASES[case]
    src, dst = tmp_path / released, tmp_path / 'converted.pth'
    _synthetic_release(config, name, src)
    proc = run_tool([sys.executable, script, str(src), str(dst)])
    assert 'written to' in proc.stdout and dst.is_file()
    src.unlink()  # disk: the Hourglass-104 files are 0.8 GB each
    ann = osp.join(coco128_root, 'annotations', 'instances_val2017.json')
    with open(ann) as f:
        images = json.load(f)['images']
    # the two smallest images (240 x 320: inputs of 255 x 383), by their index in the dataset (the file's order)
    smallest = sorted(range(len(images)), key=lambda i: (images[i]['height'] * images[i]['width'], i))[:2]
    options = [
        f'test_dataloader.dataset.data_root={coco128_root}/', 'test_dataloader.dataset.ann_file=annotations/'
        'instances_val2017.json', 'test_dataloader.dataset.data_prefix.img=val2017/',
        f'test_dataloader.dataset.indices=[{smallest[0]},{smallest[1]}]', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', f'test_evaluator.ann_file={ann}'
    ]
    out = tmp_path / 'results.pkl'
    proc = run_tool([
        sys.executable, 'tools/test.py', config,
        str(dst), '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(out), '--cfg-options', *options
    ])
    log = proc.stdout + proc.stderr
    assert 'Load checkpoint from' in log and 'Evaluating bbox' in log
    assert re.search(r'coco/bbox_mAP: \d+\.\d+', log), log[-3000:]
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert sorted(r['img_id'] for r in results) == sorted(images[i]['id'] for i in smallest)
    for res in results:
        boxes, labels = res['pred_instances']['bboxes'], res['pred_instances']['labels']
        h, w = res['ori_shape']
        assert 0 < len(boxes) <= max_per_img and set(labels.tolist()) == {0}
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 3] <= h).all() and (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
