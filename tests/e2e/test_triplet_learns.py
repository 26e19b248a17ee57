"""The quick keypoint-triplet config learns on real images, and what its center-region check does.

The protocol of ``tests/e2e/test_cornernet_learns.py`` (8 BCCD train images memorised; resize + flips for
training, the same resize and zero padding for testing; Adam after a 20-iteration warm-up, lr / 10 for the last
quarter, batch 4, 1 thread): the model, targets, losses, decoding (with the center-region check) and soft-NMS are
those of ``configs/centernet_triplet/centernet-triplet_hourglass-d3w32_1xb8-crop159-quick_bccd.py``; bar: bbox
mAP@0.5 >= 0.5 on the 8 images. Seed 0 runs in the suite; seeds 1-3 carry the ``slow`` marker
(``pytest -m slow tests/e2e/test_triplet_learns.py``). Numbers: configs/centernet_triplet/README.md.
"""
import json
import os.path as osp
import sys
import time

import pytest
import torch

from tests.conftest import REPO
from tests.e2e.test_cornernet_learns import memorisation_config

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))

CONFIG = 'configs/centernet_triplet/centernet-triplet_hourglass-d3w32_1xb8-crop159-quick_bccd.py'
EPOCHS = 150
LR = 4e-3


def train_and_test(seed, bccd_root, work_dir):
    """Train and test the memorisation config; returns the test metrics, the config and the trained checkpoint."""
    from mmengine.runner import Runner
    cfg = memorisation_config(CONFIG, EPOCHS, LR, bccd_root, work_dir)
    cfg.randomness = dict(seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.time()
        runner = Runner.from_cfg(cfg)
        runner.train()
        metrics = runner.test()
        print(f'triplets seed {seed}: {EPOCHS} epochs in {time.time() - start:.0f} s, {metrics}')
        runner.save_checkpoint(str(work_dir), 'trained.pth')
    finally:
        torch.set_num_threads(threads)
    return metrics, cfg, osp.join(str(work_dir), 'trained.pth')


@pytest.mark.e2e
@pytest.mark.parametrize('seed', [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow),
                                  pytest.param(3, marks=pytest.mark.slow)])
def test_quick_triplet_config_learns_eight_bccd_images(seed, bccd_root, tmp_path):
    metrics, cfg, checkpoint = train_and_test(seed, bccd_root, tmp_path)
    assert metrics['coco/bbox_mAP_50'] >= 0.5, metrics
    if seed != 0:
        return
    # tools/analysis_tools/triplet_center_check.py on the trained weights: the "on" row is the test above (same
    # config, same weights, same CocoMetric); "off" decodes the same maps as CornerNet
    import triplet_center_check as tool
    config = osp.join(str(tmp_path), 'memorise.py')
    cfg.dump(config)
    out = osp.join(str(tmp_path), 'fd.json')
    assert tool.main([config, checkpoint, '--work-dir', str(tmp_path / 'fd'), '--json', out]) == 0
    with open(out) as f:
        rows = json.load(f)
    print('center-region check on / off:', rows)
    assert rows['on']['mAP'] == pytest.approx(metrics['coco/bbox_mAP'], abs=1e-3)
    assert rows['on']['FD_50'] == pytest.approx(1 - metrics['coco/bbox_mAP_50'], abs=1e-3)
    for row in rows.values():
        assert 0 <= row['FD_5'] <= row['FD_25'] <= row['FD_50'] <= 1  # AP falls as the IoU threshold rises
        assert row['FD_5'] <= row['FD'] <= row['FD_50']  # FD: 1 - mean AP over IoU 0.05..0.5
