"""Bad annotations (issue 12, item 2) through ``CheckedCocoDataset`` and the real pipeline of every quick config.

A COCO file over three real BCCD images (640x480) holds one box per rule of ``mmkp/datasets/coco.py``. The dataset's
boxes, labels, counts and the single warning are compared with a per-annotation loop that applies the rules as
documented; the boxes then go through each quick config's train pipeline, data preprocessor and model to finite
losses and gradients, and through ``CocoMetric`` (with and without ``checked_ann_file``).
"""
import copy
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import mmkp  # noqa: F401
import mmkp.datasets.coco as coco_module
from mmkp.registry import DATASETS, METRICS, MODELS
from tests.conftest import BCCD, QUICK_CONFIGS, REPO

CLASSES = ('RBC', 'WBC', 'Platelets')
W, H = 640, 480
#: (annotation id, image id, category id, [x, y, w, h], extra fields, the rule it must meet)
CASES = [
    (1, 1, 1, [100, 100, 50, 40], {}, None),
    (2, 1, 2, [300, 200, 60, 60], {}, None),
    (3, 1, 1, [10, 10, 0, 20], {}, 'width or height < 1 px'),
    (4, 1, 1, [50, 50, 20, -5], {}, 'width or height < 1 px'),
    (5, 1, 1, [math.nan, 10, 20, 20], {}, 'non-finite bbox'),
    (6, 1, 3, [10, 10, math.inf, 20], {}, 'non-finite bbox'),
    (7, 1, 1, [700, 100, 30, 30], {}, 'outside the image'),
    (8, 1, 1, [639.5, 10, 20, 20], {}, 'outside the image'),  # 0.5 px inside
    (9, 1, 2, [620, 460, 40, 40], {}, 'clipped'),
    (10, 1, 3, [-10, -5, 30, 25], {}, 'clipped'),
    (11, 1, 99, [200, 200, 20, 20], {}, 'unknown category'),
    (12, 1, 4, [220, 220, 20, 20], {}, 'category not in classes'),
    (13, 999, 1, [10, 10, 20, 20], {}, 'no such image'),
    (14, 1, 1, [400, 300, 20, 20], {'area': 0}, 'area <= 0'),
    (15, 1, 1, [420, 320, 20, 20], {'ignore': True}, 'ignore flag'),
    (16, 2, 3, [30, 40, 25, 35], {'no_area': True}, None),
    (17, 2, 1, [500.25, 100.5, 30.5, 20.75], {}, None),
]


def _bccd_images():
    with open(osp.join(BCCD, 'annotations', 'instances_train.json')) as f:
        images = json.load(f)['images'][:3]
    assert all((i['width'], i['height']) == (W, H) for i in images)
    return [dict(i, id=k + 1) for k, i in enumerate(images)]  # ids 1, 2, 3; image 3 has no annotation


def write_bad_file(path):
    anns = []
    for ann_id, img_id, cat, box, extra, _ in CASES:
        ann = dict(id=ann_id, image_id=img_id, category_id=cat, bbox=box, iscrowd=0)
        if not extra.get('no_area'):
            ann['area'] = extra.get('area', box[2] * box[3] if all(map(math.isfinite, box)) else 100.0)
        ann.update({k: v for k, v in extra.items() if k in ('ignore', )})
        anns.append(ann)
    cats = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)] + [dict(id=4, name='cells')]
    with open(path, 'w') as f:
        json.dump(dict(images=_bccd_images(), annotations=anns, categories=cats), f)  # NaN / Infinity tokens
    return str(path)


def reference_rules():
    """The documented rules, one annotation at a time: {image id: [(x1, y1, x2, y2, label)]}, counts, examples."""
    images = {i['id']: (i['width'], i['height']) for i in _bccd_images()}
    cat_ids = {1: 0, 2: 1, 3: 2}  # id -> label, from the names of CLASSES
    kept = {i: [] for i in images}
    counts, examples = {}, []
    for ann_id, img_id, cat, (x, y, w, h), extra, _ in CASES:
        rule = None
        if img_id not in images:
            rule = 'no such image'
        elif cat not in (1, 2, 3, 4):
            rule = 'unknown category'
        elif cat not in cat_ids:
            rule = 'category not in classes'
        elif not all(math.isfinite(v) for v in (x, y, w, h)):
            rule = 'non-finite bbox'
        elif w < 1 or h < 1:
            rule = 'width or height < 1 px'
        else:
            iw, ih = images[img_id]
            x1, y1 = min(max(x, 0), iw), min(max(y, 0), ih)
            x2, y2 = min(max(x + w, 0), iw), min(max(y + h, 0), ih)
            if x2 - x1 < 1 or y2 - y1 < 1:
                rule = 'outside the image'
            elif extra.get('area', 1) <= 0:
                rule = 'area <= 0'
            elif extra.get('ignore'):
                rule = 'ignore flag'
            else:
                kept[img_id].append((x1, y1, x2, y2, cat_ids[cat]))
                if (x1, y1, x2, y2) != (x, y, x + w, y + h):
                    rule = 'clipped'
        if rule:
            counts[rule] = counts.get(rule, 0) + 1
            examples.append((img_id, ann_id, rule))
    return kept, counts, examples


def test_rules_table_matches_cases():
    kept, counts, examples = reference_rules()
    assert [(a, r) for _, a, r in examples] == [(c[0], c[5]) for c in CASES if c[5]]  # the cases mean what they say


def _dataset(ann_file, test_mode=True, pipeline=(), **kwargs):
    return DATASETS.build(
        dict(
            type='CheckedCocoDataset',
            ann_file=ann_file,
            data_prefix=dict(img=osp.join(BCCD, 'images') + '/'),
            metainfo=dict(classes=CLASSES),
            test_mode=test_mode,
            filter_cfg=dict(filter_empty_gt=True, min_size=0),
            pipeline=list(pipeline),
            **kwargs))


def test_every_rule_with_one_counted_warning(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(coco_module, 'print_log', lambda msg, **kw: logged.append((msg, kw)))
    ann_file = write_bad_file(tmp_path / 'bad.json')
    ds = _dataset(ann_file)
    kept, counts, examples = reference_rules()
    assert len(ds) == 3
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        got = [(*inst['bbox'], inst['bbox_label']) for inst in info['instances']]
        assert np.allclose(np.array(got).reshape(-1, 5), np.array(kept[info['img_id']]).reshape(-1, 5)), info['img_id']
    assert sum(len(v) for v in kept.values()) == 6  # 4 valid + 2 clipped
    report = ds.annotation_report
    assert {k: v for k, v in report['counts'].items() if v} == counts
    assert report['examples'] == examples and report['total'] == len(CASES)
    assert len(logged) == 1, logged
    message = logged[0][0]
    assert message.startswith(f'CheckedCocoDataset: {ann_file}: 11 of 17 annotations ignored, 2 clipped (')
    for rule, n in counts.items():
        assert f'{rule}: {n}' in message
    first = '; '.join(f'image {i} annotation {a} ({r})' for i, a, r in examples[:5])
    assert f'first: {first}; and {len(examples) - 5} more' in message
    assert _dataset(ann_file, test_mode=False).__len__() == 2  # image 3 (no boxes) leaves training only


def test_clean_file_no_warning_and_same_boxes_as_mmdet(monkeypatch):
    """BCCD as shipped: nothing to say, and exactly mmdet's CocoDataset's boxes."""
    from mmdet.datasets import CocoDataset
    logged = []
    monkeypatch.setattr(coco_module, 'print_log', lambda msg, **kw: logged.append(msg))
    ann_file = osp.join(BCCD, 'annotations', 'instances_val.json')
    ours = _dataset(ann_file)
    theirs = CocoDataset(ann_file=ann_file, data_prefix=dict(img=osp.join(BCCD, 'images') + '/'),
                         metainfo=dict(classes=CLASSES), test_mode=True, pipeline=[])
    assert len(ours) == len(theirs) == 87 and logged == []
    for i in range(len(ours)):
        assert ours.get_data_info(i)['instances'] == theirs.get_data_info(i)['instances']


@pytest.mark.parametrize('config', ['bccd_detection.py', 'bccd_detection_320x240.py', 'coco128_detection.py'])
def test_base_dataset_configs_build_and_load(config):
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets', config))
    for split in ('train_dataloader', 'val_dataloader'):
        assert cfg[split]['dataset']['type'] == 'CheckedCocoDataset'
        ds = DATASETS.build(cfg[split]['dataset'])
        item = ds[0]
        assert len(ds) >= 87 and item['inputs'].shape[0] == 3 and len(item['data_samples'].gt_instances) > 0
    for split in ('val_evaluator', 'test_evaluator'):  # the metric's ground truth is the dataset's
        assert cfg[split]['type'] == 'CheckedCocoMetric'
        metric = METRICS.build(cfg[split])
        metric.dataset_meta = ds.metainfo
        assert metric.annotation_report == ds.annotation_report
        assert len(metric._coco_api.dataset['annotations']) == sum(
            len(ds.get_data_info(i)['instances']) for i in range(len(ds)))


def test_not_json_names_the_file(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"images": [], "annotations": [}')
    with pytest.raises(ValueError, match=r'broken\.json: not a JSON annotation file: .*line 1 column 32'):
        _dataset(str(path))
    path.write_bytes(b'\xff\xfe\x00garbage')
    with pytest.raises(ValueError, match=r'broken\.json: not a JSON annotation file'):
        _dataset(str(path))
    path.write_text('[1, 2]')
    with pytest.raises(ValueError, match=r'broken\.json: a COCO annotation file holds a JSON object, this one a list'):
        _dataset(str(path))


@pytest.mark.parametrize('key', ['images', 'annotations', 'categories'])
def test_missing_key_names_file_and_key(tmp_path, key):
    data = json.loads(open(write_bad_file(tmp_path / 'full.json')).read())
    del data[key]
    path = tmp_path / f'no_{key}.json'
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"no_{key}\.json: no '{key}' key"):
        _dataset(str(path))


@pytest.mark.parametrize('edit,match', [
    (lambda d: d['annotations'][2].pop('bbox'), r"annotation #2 \(id 3\) has no 'bbox'"),
    (lambda d: d['annotations'][0].update(bbox=[1, 2, 3]), r'annotation id 1 has bbox \[1, 2, 3\], not 4 numbers'),
    (lambda d: d['images'][1].pop('height'), r"image #1 \(id 2\) has no 'height'"),
    (lambda d: d['images'][1].update(id=1), r'image ids are not unique: \[1\]'),
    (lambda d: d['images'][0].update(width=0), r'image id 1 has width x height 0 x 480'),
    (lambda d: d['categories'].pop(1), r"classes \['WBC'\] of the dataset are not categories of the file"),
])
def test_malformed_entries_are_named(tmp_path, edit, match):
    data = json.loads(open(write_bad_file(tmp_path / 'full.json')).read())
    edit(data)
    path = tmp_path / 'edited.json'
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r'edited\.json: ' + match):
        _dataset(str(path))


@pytest.mark.parametrize('name', list(QUICK_CONFIGS))
def test_bad_file_trains_with_finite_losses_and_gradients(tmp_path, name):
    """The file of every rule -> each quick config's train pipeline -> data preprocessor -> model: finite loss."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(REPO, QUICK_CONFIGS[name]))
    pipeline = cfg.train_dataloader.dataset.pipeline
    ds = _dataset(write_bad_file(tmp_path / 'bad.json'), test_mode=False, pipeline=pipeline)
    model = MODELS.build(cfg.model)
    model.train()
    batch = model.data_preprocessor(pseudo_collate([ds[0], ds[1]]), True)
    assert sum(len(s.gt_instances) for s in batch['data_samples']) <= 6
    losses = model(**batch, mode='loss')
    total = sum(v if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if 'loss' in k)
    assert all(torch.isfinite(torch.as_tensor(v if isinstance(v, torch.Tensor) else sum(v))).all()
               for v in losses.values()), losses
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def _perfect_predictions(ds):
    """The dataset's own boxes (original pixels) as detections of score 1: what a perfect model would output."""
    samples = []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        boxes = torch.tensor([inst['bbox'] for inst in info['instances']], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([inst['bbox_label'] for inst in info['instances']], dtype=torch.int64)
        samples.append(dict(img_id=info['img_id'], ori_shape=(info['height'], info['width']),
                            pred_instances=dict(bboxes=boxes, scores=torch.ones(len(boxes)), labels=labels)))
    return samples


def _coco_map(ann_file, samples, prefix, metric_type='CocoMetric'):
    metric = METRICS.build(dict(type=metric_type, ann_file=ann_file, metric='bbox', classwise=False,
                                outfile_prefix=prefix))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, copy.deepcopy(samples))
    return metric.evaluate(len(samples))['coco/bbox_mAP']


def _raw_with_areas(raw, path):
    """The raw file with the ``area`` pycocotools needs filled in (without it ``CocoMetric`` stops with
    ``KeyError: 'area'``)."""
    data = json.loads(open(raw).read())
    for ann in data['annotations']:
        ann.setdefault('area', 100.0)
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize('config', ['bccd_detection.py', 'bccd_detection_320x240.py', 'coco128_detection.py'])
def test_default_evaluator_scores_what_the_dataset_trains_on(tmp_path, monkeypatch, config):
    """The val / test evaluator of every base dataset config is ``CheckedCocoMetric``: built as the loop builds it
    (``Evaluator``, then the dataset's ``metainfo`` as ``dataset_meta``) on the file of every rule, perfect
    detections of the kept boxes score mAP 1.0 -- the raw file, missing ``area`` included, no path to set -- and it
    logs the dataset's counted warning. mmdet's ``CocoMetric`` on the same file scores < 1 (it counts the ignored
    boxes as ground truth)."""
    from mmengine.evaluator import Evaluator
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets', config))
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'CheckedCocoMetric'
    logged = []
    monkeypatch.setattr(coco_module, 'print_log', lambda msg, **kw: logged.append(msg))
    raw = write_bad_file(tmp_path / 'bad.json')
    ds = _dataset(raw)
    samples = _perfect_predictions(ds)
    assert sum(len(s['pred_instances']['labels']) for s in samples) == 6
    for split in ('val_evaluator', 'test_evaluator'):
        evaluator = Evaluator(dict(cfg[split], ann_file=raw, outfile_prefix=str(tmp_path / split)))
        evaluator.dataset_meta = ds.metainfo  # what mmengine's ValLoop / TestLoop do
        evaluator.process(copy.deepcopy(samples))
        assert evaluator.evaluate(len(samples))['coco/bbox_mAP'] == 1.0
        metric = evaluator.metrics[0]
        assert type(metric).__name__ == 'CheckedCocoMetric'
        assert metric.annotation_report == ds.annotation_report
        # a second evaluation on the same metric (pycocotools writes into the ground truth it is given)
        evaluator.process(copy.deepcopy(samples))
        assert evaluator.evaluate(len(samples))['coco/bbox_mAP'] == 1.0
    dataset_warning = logged[0]
    assert dataset_warning.startswith(f'CheckedCocoDataset: {raw}: 11 of 17 annotations ignored, 2 clipped (')
    assert logged[1:] == [dataset_warning.replace('CheckedCocoDataset:', 'CheckedCocoMetric:', 1)] * 2, logged
    assert _coco_map(_raw_with_areas(raw, tmp_path / 'raw_with_areas.json'), samples, str(tmp_path / 'b')) < 1.0


def test_checked_metric_rules_and_errors(tmp_path, monkeypatch):
    """``CheckedCocoMetric``: the ground truth for the dataset's classes (the 'cells' box is ignored only once the
    classes are known), no ``dataset_meta`` -> every category, a class that no category has and a broken file stop
    with the file named."""
    init_default_scope('mmdet')
    monkeypatch.setattr(coco_module, 'print_log', lambda msg, **kw: None)
    raw = write_bad_file(tmp_path / 'bad.json')
    samples = _perfect_predictions(_dataset(raw))
    metric = METRICS.build(dict(type='CheckedCocoMetric', ann_file=raw))
    assert metric.annotation_report is None and metric._coco_api is None  # built when the classes are known
    metric.process({}, copy.deepcopy(samples))  # no dataset_meta: every category of the file
    assert metric.annotation_report['counts']['category not in classes'] == 0
    assert metric.annotation_report['counts']['ignore flag'] == 1
    assert sorted(a['id'] for a in metric._coco_api.dataset['annotations']) == [1, 2, 9, 10, 12, 16, 17]
    metric.dataset_meta = dict(classes=CLASSES)  # rebuilt (the file read again) for the classes
    assert metric.annotation_report['counts']['category not in classes'] == 1
    assert sorted(a['id'] for a in metric._coco_api.dataset['annotations']) == [1, 2, 9, 10, 16, 17]
    metric = METRICS.build(dict(type='CheckedCocoMetric', ann_file=raw))
    with pytest.raises(ValueError, match=r"bad\.json: classes \['Neutrophil'\] of the dataset are not categories"):
        metric.dataset_meta = dict(classes=('RBC', 'Neutrophil'))
    (tmp_path / 'broken.json').write_text('{"images": [')
    with pytest.raises(ValueError, match=r'broken\.json: not a JSON annotation file'):
        METRICS.build(dict(type='CheckedCocoMetric', ann_file=str(tmp_path / 'broken.json')))
    with pytest.raises(FileNotFoundError, match=r'absent\.json: annotation file not found'):
        METRICS.build(dict(type='CheckedCocoMetric', ann_file=str(tmp_path / 'absent.json')))


def test_metric_counts_what_the_dataset_trains_on(tmp_path):
    """mmdet's ``CocoMetric`` (for a config of one's own that keeps it): on the raw file it still counts the ignored
    boxes (perfect detections score < 1); on the file the dataset writes (``checked_ann_file``) it scores 1, as
    ``CheckedCocoMetric`` does on the raw file."""
    raw = write_bad_file(tmp_path / 'bad.json')
    checked = tmp_path / 'checked' / 'bad.checked.json'
    ds = _dataset(raw, checked_ann_file=str(checked))
    samples = _perfect_predictions(ds)
    assert sum(len(s['pred_instances']['labels']) for s in samples) == 6
    written = json.loads(checked.read_text())
    assert [a['id'] for a in written['annotations']] == [1, 2, 9, 10, 16, 17]
    assert _coco_map(str(checked), samples, str(tmp_path / 'a')) == 1.0
    assert _coco_map(raw, samples, str(tmp_path / 'c'), metric_type='CheckedCocoMetric') == 1.0
    # the ignored boxes count as missed ground truth -- the mismatch CheckedCocoMetric removes
    assert _coco_map(_raw_with_areas(raw, tmp_path / 'raw_with_areas.json'), samples, str(tmp_path / 'b')) < 1.0


def _grid_file(path, n=200):
    """One 640x480 BCCD image with ``n`` 20x16 px boxes on a 20 x 10 grid (distinct corner cells at stride 4 and
    at the 0.5 resize of the quick configs)."""
    image = _bccd_images()[0]
    anns = []
    for k in range(n):
        c, r = k % 20, k // 20
        anns.append(dict(id=k + 1, image_id=image['id'], category_id=1 + k % 3, bbox=[32 * c + 4, 48 * r + 8, 20, 16],
                         area=320, iscrowd=0))
    cats = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
    with open(path, 'w') as f:
        json.dump(dict(images=[image], annotations=anns, categories=cats), f)
    return str(path)


def test_200_objects_all_reach_the_corner_targets_and_the_embedding_loss(tmp_path):
    """No ``max_tag_len``: 200 objects of one image -> 200 corner pairs, and pull / push over all of them equal a
    per-object loop of the CornerNet formulas (princeton-vl/CornerNet-Lite@6a54505 losses.py ``_ae_loss``)."""
    init_default_scope('mmdet')
    # the CenterNet quick config: its plain resize + pack pipeline keeps all boxes
    cfg = Config.fromfile(osp.join(REPO, QUICK_CONFIGS['centernet']))
    pipeline = [t for t in cfg.train_dataloader.dataset.pipeline if t['type'] != 'RandomFlip']
    ds = _dataset(_grid_file(tmp_path / 'grid.json'), test_mode=False, pipeline=pipeline)
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    batch = DetDataPreprocessor()(pseudo_collate([ds[0]]), True)
    gt = batch['data_samples'][0].gt_instances
    assert len(gt) == 200
    from mmkp.models.dense_heads import CornerPoolHead
    head = CornerPoolHead(num_classes=3, in_channels=8, num_stacks=1, pool_channels=8, feat_channels=8)
    in_h, in_w = batch['inputs'].shape[-2:]
    feat_h, feat_w = in_h // 4, in_w // 4
    gt_boxes = getattr(gt.bboxes, 'tensor', gt.bboxes)
    targets = head.assigner.assign([InstanceData(bboxes=gt_boxes, labels=gt.labels)], (feat_h, feat_w),
                                   (in_h, in_w), 3, [batch['data_samples'][0].metainfo])
    assert targets.mask.shape[1] >= 200 and int(targets.mask.sum()) == 200
    g = torch.Generator().manual_seed(0)
    tl_map, br_map = torch.randn(1, 1, feat_h, feat_w, generator=g), torch.randn(1, 1, feat_h, feat_w, generator=g)
    maps = {'top_left': {'embedding': tl_map}, 'bottom_right': {'embedding': br_map}}
    pull, push = head.loss_embedding_single(maps, targets)
    # reference: each object's corner cells from its box (input pixels / 4, floored), then the sums written out
    boxes = gt_boxes.tolist()
    t = [float(tl_map[0, 0, int(y1 * feat_h / in_h), int(x1 * feat_w / in_w)]) for x1, y1, _, _ in boxes]
    b = [float(br_map[0, 0, int(y2 * feat_h / in_h), int(x2 * feat_w / in_w)]) for _, _, x2, y2 in boxes]
    e = [(tk + bk) / 2 for tk, bk in zip(t, b)]
    n, eps = len(e), 1e-4
    ref_pull = sum((tk - ek)**2 + (bk - ek)**2 for tk, bk, ek in zip(t, b, e)) / (n + eps)
    ref_push = sum(max(0.0, 1 - abs(ej - ek)) - 1 / (n + eps) for ej in e for ek in e) / (n * (n - 1) + eps)
    assert float(pull) == pytest.approx(0.1 * ref_pull, rel=1e-4)
    assert float(push) == pytest.approx(0.1 * ref_push, rel=1e-3, abs=1e-7)
    # the 200th object alone changes the pull: without it the loss would differ
    ref_pull_199 = sum((tk - ek)**2 + (bk - ek)**2 for tk, bk, ek in zip(t[:199], b[:199], e[:199])) / (199 + eps)
    assert abs(0.1 * ref_pull_199 - float(pull)) > 1e-6
