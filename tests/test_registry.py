"""mmkp registers into mmdet's registries without shadowing anything, and works from a stock mmdet config."""
import json
import os
import subprocess
import sys

import torch
from mmengine.config import Config

DUMP = r'''
import json, sys
import mmengine.registry as root
import mmdet.registry as det
from mmdet.utils import register_all_modules
register_all_modules(init_default_scope=False)
import mmcv.ops, mmcv.transforms  # noqa: mmcv registers ops and transforms in mmengine's roots
if sys.argv[1] == 'mmkp':
    import mmkp  # noqa
out = {}
for name in dir(det):
    reg = getattr(det, name)
    if not isinstance(reg, root.Registry):
        continue
    for r in (reg, getattr(root, name, None)):
        if r is None:
            continue
        for key, obj in r.module_dict.items():
            out.setdefault(f'{name}:{key}', getattr(obj, '__module__', ''))
print(json.dumps(out))
'''


def _registered(with_mmkp):
    proc = subprocess.run([sys.executable, '-c', DUMP, 'mmkp' if with_mmkp else 'none'],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mmkp_names_belong_to_mmkp_and_shadow_nothing():
    before = _registered(False)
    after = _registered(True)
    added = {k: v for k, v in after.items() if k not in before}
    assert added, 'mmkp registered nothing'
    foreign = {k: v for k, v in added.items() if not v.startswith('mmkp')}
    assert not foreign, f'names added on importing mmkp that are not mmkp classes: {foreign}'
    # nothing registered by mmdet/mmcv/mmengine was replaced by an mmkp class
    replaced = {k: after[k] for k in before if after.get(k, '').startswith('mmkp')}
    assert not replaced, f'mmkp shadows existing names: {replaced}'
    # every mmkp class in the registries is new
    mmkp_names = {k for k, v in after.items() if v.startswith('mmkp')}
    assert mmkp_names == set(added)
    for expected in ('MODELS:CenterHeatmapHead', 'MODELS:HeatmapFocalLoss', 'TASK_UTILS:GaussianHeatmapAssigner',
                     'TASK_UTILS:CenterHeatmapDecoder', 'TRANSFORMS:RandomColorJitter'):
        assert expected in added


def test_stock_mmdet_config_with_custom_imports(coco128_root, tmp_path):
    """mmdet's own CenterNet config, plus custom_imports and an mmkp head, builds and predicts on a real image."""
    from mmdet.apis import init_detector, inference_detector
    cfg_file = tmp_path / 'user_config.py'
    cfg_file.write_text("_base_ = 'mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py'\n"
                        "custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)\n"
                        "model = dict(backbone=dict(init_cfg=None), bbox_head=dict(_delete_=True, "
                        "type='CenterHeatmapHead', num_classes=80, in_channels=64))\n")
    cfg = Config.fromfile(str(cfg_file))  # runs custom_imports
    assert cfg.default_scope == 'mmdet'
    torch.manual_seed(0)
    model = init_detector(cfg, checkpoint=None, device='cpu')
    assert type(model.bbox_head).__module__.startswith('mmkp')
    img = os.path.join(coco128_root, 'val2017', sorted(os.listdir(os.path.join(coco128_root, 'val2017')))[0])
    # mmdet's test pipeline (RandomCenterCropPad, `border` meta) through mmkp's decoder
    inst = inference_detector(model, img).pred_instances
    assert inst.bboxes.shape == (100, 4) and inst.scores.shape == (100, )
    assert torch.isfinite(inst.bboxes).all()
    assert (inst.scores[:-1] >= inst.scores[1:]).all()
