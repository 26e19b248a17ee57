"""Inference speed of one detector on BCCD val images: images/s and ms/image, split into phases.

    python tools/analysis_tools/benchmark.py CONFIG [--checkpoint CKPT] [--images N] [--warmup W] [--json PATH]
                                             [--device cpu|cuda] [--threads T] [--cfg-options k=v ...]

The images are the first ``N`` of BCCD val (``$MMKP_DATA/bccd``, ``$MMKP_DATA`` defaulting to ``../shared/data``;
640 x 480 images) through the config's own test pipeline (so a COCO config resizes them as it would COCO images),
one image per batch, after ``W`` warm-up images (default 2) that are processed the same way but not counted.
Per image the wall time (seconds; CUDA synchronised around each phase) is split into

* ``preprocess``: the data pipeline (``dataset[i]``: reading the file, resizing, packing) and the model's
  ``data_preprocessor`` (normalisation, padding, batching);
* ``network``: backbone, neck and head forward passes (``extract_feat``, ``bbox_head.forward`` /
  ``forward_single``);
* ``decoding``: the head's ``predict_by_feat`` (peak extraction, box decoding, NMS);
* ``postprocess``: the rest of ``model.predict`` (``add_pred_to_datasample``) and moving the results to the CPU;

the reported figure of each phase and of the ``total`` is the median over the timed images, ``images_per_s`` is
``1 / median total``. mmdet's own ``benchmark.py`` reports the total of data loading and of ``model.test_step``;
the split is what users of the originals ask for (e.g. princeton-vl/CornerNet-Lite@6a54505 README, "speed").

CornerNet-Saccade (``CornerNetSaccade`` with ``test_cfg.saccade``) has its own ``predict`` (views, attention,
zoomed crops and a merge, where network passes and decoding alternate): it is timed whole, ``predict`` standing
for network + decoding + post-processing, and the output says so (``split: false`` in the records);
``tools/analysis_tools/benchmark_saccade.py`` splits it in its own terms.

Without ``--checkpoint`` the model has seeded (``torch.manual_seed(0)``) ``init_weights`` weights: the decoding time
of untrained weights may differ from a trained model's (other score distributions).

Records (``--json PATH``): a list with one record per phase and one for the total,
``{"name": "<config stem>/<phase>", "phase", "config", "shape", "seconds" (median s/image), "ms_per_image",
"images_per_s", "images", "warmup", "device", "threads", "split", "note"}``.
"""
import argparse
import logging
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.utils.benchmark import PartTimer, write_json  # noqa: E402

SPLIT_PHASES = ('preprocess', 'network', 'decoding', 'postprocess')
WHOLE_PHASES = ('preprocess', 'predict')
BCCD_VAL_ANN = 'annotations/instances_val.json'
BCCD_METAINFO = dict(classes=('RBC', 'WBC', 'Platelets'))
WHOLE_NOTE = ('the detector has its own predict (CornerNet-Saccade: views, attention, crops, merge): network, '
              'decoding and post-processing are timed together as "predict"')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', default=None, help='weights (default: seeded init_weights)')
    parser.add_argument('--images', type=int, default=20, help='timed images (after the warm-up)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed warm-up images')
    parser.add_argument('--json', default=None, help='write the records as JSON to this path')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='device to run on')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='config overrides, as in tools/test.py')
    return parser.parse_args(argv)


def has_split(model) -> bool:
    """True when ``model.predict`` is mmdet's ``SingleStageDetector.predict`` (features -> head predict -> samples)
    or CornerNet-Saccade without its saccade test (which falls back to it)."""
    from mmdet.models.detectors import SingleStageDetector
    if type(model).predict is SingleStageDetector.predict:
        return True
    return getattr(model, 'saccade_cfg', 'absent') is None


def instrument(model, timer: PartTimer) -> None:
    """Time the network (features and head forward) and the decoding (``predict_by_feat``) of ``model``."""
    head = model.bbox_head
    timer.wrap(model, 'extract_feat', 'network')
    for name in ('forward', 'forward_single'):
        if hasattr(head, name):
            timer.wrap(head, name, 'network')
    timer.wrap(head, 'predict_by_feat', 'decoding')


def build(config: str, device: str, checkpoint: Optional[str], cfg_options: List[str]):
    """(model in eval mode on ``device``, test dataset, loaded config)."""
    from mmdet.registry import DATASETS
    from mmengine.config import Config, DictAction
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint

    from mmkp.converters.core import build_model_from_config
    from mmkp.utils import get_data_root
    get_data_root(set_env=True)
    if not osp.isfile(config):
        raise SystemExit(f'benchmark: no config file {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        opts = argparse.Namespace()
        DictAction(option_strings=['--cfg-options'], dest='opts')(None, opts, cfg_options)
        cfg.merge_from_dict(opts.opts)
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    else:
        logging.disable(logging.INFO)  # init_weights logs every parameter
        try:
            model.init_weights()
        finally:
            logging.disable(logging.NOTSET)
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(bccd_val_dataset(cfg, config))
    if len(dataset) == 0:
        raise SystemExit(f'benchmark: BCCD val ({BCCD_VAL_ANN} under {get_data_root()}/bccd) has no image')
    return model.to(device).eval(), dataset, cfg


def bccd_val_dataset(cfg, config: str) -> dict:
    """The config's test dataset with its files replaced by BCCD val's (its ``pipeline`` kept, so that a COCO
    config times its own resizing and padding on BCCD's 640 x 480 images).

    Raises:
        SystemExit: when the config has no ``test_dataloader.dataset.pipeline`` or BCCD val is not there.
    """
    import copy

    from mmkp.utils import get_data_root
    dataset = copy.deepcopy(cfg.get('test_dataloader', {}).get('dataset', None))
    if not dataset or 'pipeline' not in dataset:
        raise SystemExit(f'benchmark: {config} has no test_dataloader.dataset.pipeline')
    root = osp.join(get_data_root(), 'bccd')
    if not osp.isfile(osp.join(root, BCCD_VAL_ANN)):
        raise SystemExit(f'benchmark: no BCCD val annotations at {osp.join(root, BCCD_VAL_ANN)} (set MMKP_DATA)')
    dataset.update(type='CheckedCocoDataset', data_root=root + '/', ann_file=BCCD_VAL_ANN,
                   data_prefix=dict(img='images/'), metainfo=BCCD_METAINFO, test_mode=True)
    return dataset


def time_images(model, dataset, num: int, warmup: int, device: str) -> List[Dict[str, float]]:
    """Per timed image the seconds of each phase and the total (the first ``warmup`` images are dropped).

    Images are ``dataset[i % len(dataset)]`` for ``i < warmup + num``, one per batch.
    """
    from mmengine.dataset import pseudo_collate
    split = has_split(model)
    timer = PartTimer(device)
    if split:
        instrument(model, timer)
    rows = []
    for i in range(warmup + num):
        timer.reset()
        timer.sync()
        t0 = time.perf_counter()
        data = pseudo_collate([dataset[i % len(dataset)]])
        with torch.no_grad():
            batch = model.data_preprocessor(data, False)
            timer.sync()
            t1 = time.perf_counter()
            samples = model.predict(batch['inputs'], batch['data_samples'], rescale=True)
            [s.pred_instances.cpu() for s in samples]
        timer.sync()
        t2 = time.perf_counter()
        if i < warmup:
            continue
        row = dict(preprocess=t1 - t0, total=t2 - t0)
        if split:
            row['network'] = timer.seconds.get('network', 0.0)
            row['decoding'] = timer.seconds.get('decoding', 0.0)
            row['postprocess'] = (t2 - t1) - row['network'] - row['decoding']
        else:
            row['predict'] = t2 - t1
        rows.append(row)
    return rows


def summarise(rows: List[Dict[str, float]], config: str, device: str, warmup: int,
              split: bool) -> List[Dict[str, object]]:
    """One record per phase (and the total): medians over the images."""
    stem = osp.splitext(osp.basename(config))[0]
    phases = (SPLIT_PHASES if split else WHOLE_PHASES) + ('total', )
    records = []
    for phase in phases:
        sec = statistics.median(r[phase] for r in rows)
        records.append(dict(name=f'{stem}/{phase}', phase=phase, config=config, shape=f'bccd val x{len(rows)}',
                            seconds=sec, ms_per_image=1e3 * sec, images_per_s=(1.0 / sec) if sec > 0 else None,
                            images=len(rows), warmup=warmup, device=device, threads=torch.get_num_threads(),
                            split=split, note='' if split else WHOLE_NOTE))
    return records


def format_phases(records: List[Dict[str, object]]) -> str:
    """A table: phase, median ms/image, share of the total, images/s."""
    total = records[-1]['seconds']
    header = f'{"phase":<12} {"ms/image":>10} {"share":>7} {"images/s":>9}'
    lines = [header, '-' * len(header)]
    for r in records:
        share = 100.0 * r['seconds'] / total if total else float('nan')
        ips = f'{r["images_per_s"]:>9.2f}' if r['images_per_s'] else f'{"-":>9}'
        lines.append(f'{r["phase"]:<12} {r["ms_per_image"]:>10.2f} {share:>6.1f}% {ips}')
    return '\n'.join(lines)


def run(args) -> List[Dict[str, object]]:
    """Build, time and summarise; returns the records."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device available')
    if args.images < 1 or args.warmup < 0:
        raise SystemExit('--images must be >= 1 and --warmup >= 0')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, dataset, _ = build(args.config, args.device, args.checkpoint, args.cfg_options)
    split = has_split(model)
    rows = time_images(model, dataset, args.images, args.warmup, args.device)
    return summarise(rows, args.config, args.device, args.warmup, split)


def main(argv=None, log: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    records = run(args)
    r = records[0]
    log(f'{args.config}: {r["images"]} BCCD image(s) after {args.warmup} warm-up, device {args.device}, '
        f'torch {torch.__version__}, {r["threads"]} threads, '
        f'{"weights " + args.checkpoint if args.checkpoint else "seeded untrained weights"}; medians per image')
    log(format_phases(records))
    if not r['split']:
        log('note: ' + WHOLE_NOTE)
    if args.json:
        write_json(records, args.json)
        log(f'records written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
