"""Which configs have the reliability machinery on (issue 12): ``CheckedCocoMetric`` as val / test evaluator,
``FiniteLossHook`` among the custom hooks and ``AtomicCheckpointHook`` as the checkpoint hook.

Every config under ``configs/`` is read (``Config.fromfile``, nothing built). The quick BCCD configs get all three
from mmkp's bases (``configs/_base_``), the COCO paper configs from the evaluator / hook lines of the family's root
config (``centernet_r18-dcnv2_6xb19-crop512-140e_coco.py``, ``cornernet_hourglass104_10xb5-500k_coco.py`` for
CornerNet, CornerNet-Squeeze and the keypoint triplets, ``fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py``), and the
CornerNet-Saccade COCO and fine-tuning configs from their own lines. A config that lacks a piece fails the test.
"""
import glob
import os
import os.path as osp

from mmengine.config import Config

from tests.conftest import REPO

CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p.split(os.sep))


def _missing(cfg):
    missing = set()
    evaluators = [cfg.get(split) for split in ('val_evaluator', 'test_evaluator')]
    if not all(isinstance(ev, dict) and ev.get('type') == 'CheckedCocoMetric' for ev in evaluators):
        missing.add('CheckedCocoMetric')
    if 'FiniteLossHook' not in [h.get('type') for h in cfg.get('custom_hooks', [])]:
        missing.add('FiniteLossHook')
    if cfg.get('default_hooks', {}).get('checkpoint', {}).get('type') != 'AtomicCheckpointHook':
        missing.add('AtomicCheckpointHook')
    return missing


def test_every_config_has_the_metric_and_hooks():
    found = {}
    for path in CONFIGS:
        missing = _missing(Config.fromfile(path))
        if missing:
            found[osp.relpath(path, osp.join(REPO, 'configs'))] = missing
    assert found == {}  # config (relative to configs/) -> the pieces it lacks
    assert len(CONFIGS) > 40  # the glob found the configs
