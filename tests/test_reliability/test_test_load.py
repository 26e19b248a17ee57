"""Load (issue 12, item 6): ``tools/test.py`` on 2,000 images (BCCD val repeated under fresh ids) with batch 8 and
2 dataloader workers, CenterNet-R18 quick config, a random checkpoint: the resident memory of the process and its
workers stays flat and every image id reaches the results.

Memory: the RSS (``VmRSS`` in ``/proc/<pid>/status``) of the ``tools/test.py`` process plus all its descendants,
sampled every 0.25 s while the log reports the iteration (``logger.interval=1``). ``reference``: the largest sample
taken while the first 500 images (iterations 1-63) were processed after iteration 50 (warm: workers started, first
batches done); ``last``: the largest sample over the last 500 images (iterations 188-250; the metric's evaluation
after the loop is reported apart, not compared). ``last / reference - 1``
must be below 10 %. Slow (a few minutes on 2 CPU cores): ``pytest -m slow tests/test_reliability/test_test_load.py``.
"""
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys
import threading
import time

import pytest
import torch

from tests.conftest import BCCD, REPO

CONFIG = osp.join(REPO, 'configs/centernet/centernet_r18_1xb8-quick_bccd.py')
N_IMAGES, BATCH, WORKERS = 2000, 8, 2
ITERS = -(-N_IMAGES // BATCH)  # 250


def tree_rss(pid):
    """Resident memory (bytes) of ``pid`` and all its descendants, from /proc (0 for processes already gone)."""
    parents = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(')') + 2:].split()[1])  # the field after the state
    tree, grew = {pid}, True
    while grew:
        new = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    total = 0
    for p in tree:
        try:
            with open(f'/proc/{p}/status') as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmRSS:'))
        except (OSError, StopIteration):
            pass
    return total


def write_repeated_val(path):
    """BCCD val listed until there are N_IMAGES images, each with fresh image and annotation ids (1..N)."""
    with open(osp.join(BCCD, 'annotations', 'instances_val.json')) as f:
        val = json.load(f)
    by_image = {}
    for a in val['annotations']:
        by_image.setdefault(a['image_id'], []).append(a)
    images, anns = [], []
    for k in range(N_IMAGES):
        src = val['images'][k % len(val['images'])]
        images.append(dict(src, id=k + 1))
        for a in by_image.get(src['id'], []):
            anns.append(dict(a, id=len(anns) + 1, image_id=k + 1))
    with open(path, 'w') as f:
        json.dump(dict(val, images=images, annotations=anns), f)
    return len(anns)


@pytest.mark.slow
def test_2000_images_flat_memory_and_every_image_evaluated(tmp_path, bccd_root):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmkp  # noqa: F401
    from mmkp.registry import MODELS

    ann_file = tmp_path / 'val2000.json'
    assert write_repeated_val(ann_file) > N_IMAGES
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    ckpt = tmp_path / 'random.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    out = tmp_path / 'preds.pkl'
    args = [sys.executable, osp.join(REPO, 'tools/test.py'), CONFIG, str(ckpt), '--work-dir', str(tmp_path / 'work'),
            '--out', str(out), '--cfg-options', f'test_dataloader.dataset.ann_file={ann_file}',
            f'test_evaluator.ann_file={ann_file}', f'test_dataloader.batch_size={BATCH}',
            f'test_dataloader.num_workers={WORKERS}', 'default_hooks.logger.interval=1']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    start = time.time()
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = dict(iter=0)
    samples, lines = [], []

    def sample():
        while proc.poll() is None:
            rss = tree_rss(proc.pid)
            if rss:
                samples.append((state['iter'], rss))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    pattern = re.compile(r'Epoch\(test\)\s*\[\s*(\d+)/(\d+)\]')
    for line in proc.stdout:
        lines.append(line)
        m = pattern.search(line)
        if m:
            assert int(m.group(2)) == ITERS, line
            # after the last iteration the metric runs: tagged ITERS + 1, outside both windows
            state['iter'] = int(m.group(1)) + (int(m.group(1)) == ITERS)
    proc.wait(timeout=1800)
    sampler.join(timeout=5)
    log = ''.join(lines)
    assert proc.returncode == 0, log[-6000:]

    first = [rss for it, rss in samples if 50 <= it <= N_IMAGES // 4 // BATCH + 1]  # iterations 50-63
    last = [rss for it, rss in samples if ITERS - N_IMAGES // 4 // BATCH - 1 <= it < ITERS]  # iterations 188-250
    metric = [rss for it, rss in samples if it > ITERS]  # CocoMetric over the 2,000 images, after the loop
    assert first and last, (len(samples), samples[:3])
    reference, peak = max(first), max(last)
    growth = peak / reference - 1
    print(f'RSS (process + {WORKERS} workers): {reference / 2**20:.1f} MiB after the first 500 images, '
          f'max {peak / 2**20:.1f} MiB over the last 500 ({growth:+.2%}); {len(samples)} samples; '
          f'max {max(metric, default=0) / 2**20:.1f} MiB while the metric ran (after the loop); '
          f'wall {time.time() - start:.0f} s')
    assert growth < 0.10, (reference, peak)

    with open(out, 'rb') as f:
        preds = pickle.load(f)
    ids = [p['img_id'] for p in preds]
    assert len(ids) == N_IMAGES and set(ids) == set(range(1, N_IMAGES + 1))  # every image once
    assert re.search(r'coco/bbox_mAP: -?\d', log), log[-3000:]  # the metric ran over the 2,000-image file
