"""The quick-start (``make quickstart``): train CenterNet-DLA-34 on BCCD, evaluate on BCCD val, draw the detections.

    python tools/misc/quickstart.py [--config CONFIG] [--work-dir DIR] [--cfg-options k=v ...]

1. trains the quick config on BCCD train (``$MMKP_DATA/bccd``; ``MMKP_DATA`` defaults to ``../shared/data`` when it
   exists, else ``data``), logging with MMEngine;
2. evaluates the final weights on BCCD val with the config's evaluator (``CheckedCocoMetric``; the COCO table is
   printed);
3. writes every val image with its predicted boxes (mmdet's ``DetLocalVisualizer``, score >= 0.3) under
   ``<work-dir>/vis/``.
"""
import argparse
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmkp.utils import get_data_root  # noqa: E402

DEFAULT_CONFIG = 'configs/centernet/centernet_dla34_1xb8-quick_bccd.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='quick config to train')
    parser.add_argument('--work-dir', default='work_dirs/quickstart_centernet_dla34_bccd', help='output folder')
    parser.add_argument('--score-thr', type=float, default=0.3, help='score threshold of the drawn boxes')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def check_data(data_root: str) -> str:
    bccd = osp.join(data_root, 'bccd')
    needed = [osp.join(bccd, 'annotations', f'instances_{s}.json') for s in ('train', 'val')] + [
        osp.join(bccd, 'images')
    ]
    missing = [p for p in needed if not osp.exists(p)]
    if missing:
        sys.exit('BCCD is missing: ' + ', '.join(missing) + '\n'
                 f'Put the BCCD dataset (COCO format: annotations/instances_{{train,val}}.json and images/) at '
                 f'{osp.abspath(bccd)}, or set MMKP_DATA to the folder that holds bccd/.')
    return bccd


def main(argv=None):
    args = parse_args(argv)
    data_root = get_data_root(set_env=True)
    check_data(data_root)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir
    vis_dir = osp.abspath(osp.join(args.work_dir, 'vis'))
    cfg.default_hooks.visualization = dict(
        type='DetVisualizationHook', draw=True, test_out_dir=vis_dir, score_thr=args.score_thr)

    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    train_min = (time.time() - start) / 60
    metrics = runner.test()
    os.makedirs(vis_dir, exist_ok=True)
    n_vis = len([f for f in os.listdir(vis_dir) if f.lower().endswith(('.jpg', '.png'))])
    print('\n' + '=' * 72)
    print(f'quick-start done: trained {args.config} in {train_min:.1f} min')
    print(f'BCCD val bbox mAP {metrics["coco/bbox_mAP"]:.3f}, mAP@0.5 {metrics["coco/bbox_mAP_50"]:.3f}, '
          f'mAP@0.75 {metrics["coco/bbox_mAP_75"]:.3f}')
    print(f'{n_vis} val images with predicted boxes (score >= {args.score_thr}) in {vis_dir}')
    print(f'checkpoint: {osp.join(args.work_dir, "epoch_" + str(cfg.train_cfg.max_epochs) + ".pth")}')
    print('=' * 72)


if __name__ == '__main__':
    main()
