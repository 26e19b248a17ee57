"""What the center-region check of CenterNet keypoint triplets buys: the same weights evaluated with and without it.

Duan et al. (ICCV 2019, Table 3) measure the false discoveries of corner-based detectors with the false-discovery
rate FD = 1 - AP, AP averaged over IoU 0.05:0.05:0.5 on COCO, and FD_5, FD_25, FD_50 = 1 - AP at IoU 0.05, 0.25,
0.5: a box that overlaps no object even at IoU 0.05 is a false discovery. This tool tests a triplet checkpoint twice
through MMEngine's Runner (the config's own test pipeline and decoder, ``TripletDecoder.center_check`` True, then
False -- the second is the same network decoded as a CornerNet: corner pairs and soft-NMS only) and prints, for
each, bbox mAP (IoU 0.5:0.95), mAP@0.5, FD, FD_5, FD_25 and FD_50 (``CocoMetric`` with those IoU thresholds on the
config's test set; predictions dumped once per run, the FD metrics computed on them).

    python tools/analysis_tools/triplet_center_check.py CONFIG CHECKPOINT [--work-dir DIR] [--tta]
        [--json OUT.json] [--cfg-options k=v ...]

``--tta`` tests with the config's ``tta_model`` / ``tta_pipeline`` (the original's image + flip test).
"""
import argparse
import copy
import json
import os.path as osp
import sys
from typing import Dict, List, Optional

import mmengine
import numpy as np

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))  # run from a checkout

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402

from mmkp.utils import get_data_root  # noqa: E402

#: prefix -> IoU thresholds of the extra CocoMetric evaluations (Duan et al., Table 3); arrays, because pycocotools'
#: summary compares them with ``==`` (a list compares as one bool)
FD_THRESHOLDS = {
    'fd': np.linspace(0.05, 0.5, 10),
    'fd5': np.array([0.05]),
    'fd25': np.array([0.25]),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Keypoint triplets: mAP and false discoveries with and without '
                                     'the center-region check, same weights')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', default=None, help='defaults to work_dirs/<config name>_center_check')
    parser.add_argument('--tta', action='store_true', help="the config's tta_model and tta_pipeline")
    parser.add_argument('--json', default=None, help='write the two rows to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    return parser.parse_args(argv)


def check_evaluator(base) -> dict:
    """The config's test evaluator, which must be one ``CocoMetric`` or mmkp's ``CheckedCocoMetric`` (its type and
    ``ann_file`` serve the FD metrics too).

    Raises:
        ValueError: when it is not.
    """
    if isinstance(base, (list, tuple)) or base.get('type') not in ('CocoMetric', 'CheckedCocoMetric'):
        raise ValueError(f'the config must test with one CocoMetric or CheckedCocoMetric, got test_evaluator={base}')
    return dict(base)


def false_discovery_metrics(results: list, base: dict, dataset_meta: dict) -> Dict[str, float]:
    """``CocoMetric`` at the :data:`FD_THRESHOLDS` on dumped predictions (``DumpDetResults``' data samples).

    Built here rather than in the config: ``CocoMetric`` needs its ``iou_thrs`` as an array (pycocotools compares
    them with ``==``), which a config cannot print.

    Returns:
        dict: ``'<prefix>/bbox_mAP'`` etc. per threshold set (nothing for a set when no image has a detection).
    """
    from mmkp.registry import METRICS
    out = {}
    for prefix, thrs in FD_THRESHOLDS.items():
        # the config's metric type, so that its ground truth is the config's (CheckedCocoMetric's rules or not)
        metric = METRICS.build(dict(type=base['type'], ann_file=base['ann_file'], metric='bbox', iou_thrs=thrs,
                                    prefix=prefix, backend_args=base.get('backend_args')))
        metric.dataset_meta = dataset_meta
        metric.process({}, results)
        out.update(metric.evaluate(len(results)))
    return out


def build_config(args, center_check: bool) -> Config:
    get_data_root(set_env=True)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    decoder = cfg.model.get('test_cfg', {}).get('decoder')
    if decoder is None or 'Triplet' not in str(decoder.get('type')):
        raise ValueError(f'{args.config}: model.test_cfg.decoder must be a TripletDecoder, got {decoder}')
    cfg.model.test_cfg.decoder.center_check = center_check
    name = osp.splitext(osp.basename(args.config))[0]
    cfg.work_dir = osp.join(args.work_dir or osp.join('work_dirs', f'{name}_center_check'),
                            'check_on' if center_check else 'check_off')
    cfg.load_from = args.checkpoint
    cfg.test_evaluator = [check_evaluator(copy.deepcopy(cfg.test_evaluator)),
                          dict(type='DumpDetResults', out_file_path=osp.join(cfg.work_dir, 'predictions.pkl'))]
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise ValueError(f'{args.config} has no tta_model / tta_pipeline for --tta')
        cfg.tta_model.module = cfg.model
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.model = ConfigDict(**cfg.tta_model)
    return cfg


def summarise(metrics: Dict[str, float]) -> Dict[str, float]:
    """mAP, mAP@0.5 and the false-discovery rates (in [0, 1]) from the Runner's test metrics.

    ``CocoMetric`` reports nothing when no image has a detection (it logs "The testing results of the whole
    dataset is empty"): every AP is then 0 and every FD 1, and ``detections`` is False.
    """
    if 'coco/bbox_mAP' not in metrics:
        return dict(mAP=0.0, mAP_50=0.0, FD=1.0, FD_5=1.0, FD_25=1.0, FD_50=1.0, detections=False)
    return {
        'mAP': metrics['coco/bbox_mAP'],
        'mAP_50': metrics['coco/bbox_mAP_50'],
        'FD': 1 - metrics['fd/bbox_mAP'],
        'FD_5': 1 - metrics['fd5/bbox_mAP'],
        'FD_25': 1 - metrics['fd25/bbox_mAP'],
        'FD_50': 1 - metrics['coco/bbox_mAP_50'],
        'detections': True,
    }


def format_rows(rows: Dict[str, Dict[str, float]]) -> str:
    keys = ['mAP', 'mAP_50', 'FD', 'FD_5', 'FD_25', 'FD_50']
    lines = ['| center-region check | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 1) + '|']
    for name, row in rows.items():
        lines.append(f'| {name} | ' + ' | '.join(f'{row[k]:.3f}' for k in keys) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    from mmengine.runner import Runner
    args = parse_args(argv)
    rows = {}
    for check in (True, False):
        cfg = build_config(args, check)
        runner = Runner.from_cfg(cfg)
        metrics = runner.test()
        results = mmengine.load(cfg.test_evaluator[1]['out_file_path'])
        metrics.update(false_discovery_metrics(results, cfg.test_evaluator[0], runner.test_dataloader.dataset.metainfo))
        rows['on' if check else 'off'] = summarise(metrics)
    print(format_rows(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
