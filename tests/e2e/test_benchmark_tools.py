"""The benchmark tools end to end: tools/analysis_tools/benchmark.py on BCCD images of the CenterNet-R18 quick
config, and tools/analysis_tools/benchmark_all.py --quick on one whole-detector comparison."""
import json
import sys

import pytest

from tests.conftest import run_tool

CONFIG = 'configs/centernet/centernet_r18_1xb8-quick_bccd.py'
PHASES = ['preprocess', 'network', 'decoding', 'postprocess', 'total']


@pytest.mark.e2e
def test_benchmark_phases(tmp_path, bccd_root):
    """Two timed images after one warm-up: the four phases and the total, positive; with two images each median is
    the mean of the two, so the four phases add up to the total (the split leaves nothing out or counts twice)."""
    out = tmp_path / 'bench.json'
    proc = run_tool([sys.executable, 'tools/analysis_tools/benchmark.py', CONFIG, '--images', '2', '--warmup', '1',
                     '--json', str(out)])  # MMKP_DATA: set by tests/conftest.py
    records = json.loads(out.read_text())
    assert [r['phase'] for r in records] == PHASES
    by_phase = {r['phase']: r for r in records}
    for r in records:
        assert r['name'] == f'centernet_r18_1xb8-quick_bccd/{r["phase"]}'
        assert r['seconds'] > 0 and r['images'] == 2 and r['warmup'] == 1 and r['split'] is True
        assert r['ms_per_image'] == pytest.approx(1e3 * r['seconds'])
        assert r['images_per_s'] == pytest.approx(1.0 / r['seconds'])
    parts = sum(by_phase[p]['seconds'] for p in PHASES[:-1])
    assert parts == pytest.approx(by_phase['total']['seconds'], rel=1e-6)
    assert by_phase['network']['seconds'] > by_phase['postprocess']['seconds']  # ResNet-18 vs. packing results
    assert 'network' in proc.stdout and 'images/s' in proc.stdout


@pytest.mark.e2e
def test_benchmark_all_detector_records(tmp_path):
    """--quick --only detector/centernet: the predict and train_step records of mmkp against mmdet's CenterNet,
    all of mmkp's tensors copied from mmdet's model (the head's names renamed)."""
    out = tmp_path / 'all.json'
    proc = run_tool([sys.executable, 'tools/analysis_tools/benchmark_all.py', '--quick', '--only',
                     'detector/centernet', '--json', str(out)])
    records = json.loads(out.read_text())
    assert [r['name'] for r in records] == ['detector/centernet/predict', 'detector/centernet/train_step']
    for r in records:
        assert r['mmkp_s'] > 0 and r['baseline_s'] > 0
        assert r['speedup'] == pytest.approx(r['baseline_s'] / r['mmkp_s'])
        assert r['weights'] == 'weights: 174/174 mmkp tensors copied from mmdet', r['weights']
        assert r['mmdet_config'].startswith('mmdet::centernet/')
    assert records[0]['shape'] == '1x3x128x128' and records[1]['shape'].startswith('2x3x128x128')
    assert 'detector/centernet/train_step' in proc.stdout.split('==== all')[-1]
