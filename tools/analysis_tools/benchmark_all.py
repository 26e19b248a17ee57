"""Every mmkp-vs-baseline speed comparison of the project in one run, and one table of the ratios.

    python tools/analysis_tools/benchmark_all.py [--json PATH] [--quick] [--only SUITE ...] [--repeats N]
                                                 [--device cpu|cuda] [--threads T]

Suites (``--only`` selects some; default all):

* ``ops``: ``tools/analysis_tools/benchmark_ops.py`` (compiled pools and crops against mmcv / plain PyTorch);
  records renamed ``ops/<name>``;
* ``heads``: ``tools/analysis_tools/benchmark_heads.py`` (targets, losses, decoding against mmdet 3.3's heads);
  records renamed ``heads/<name>``;
* ``saccade``: ``tools/analysis_tools/benchmark_saccade.py`` (CornerNet-Saccade against CornerNet, one coco128
  image); records ``saccade/...``;
* ``detector/cornernet``, ``detector/centernet``, ``detector/fcos``: mmkp's whole detector against mmdet 3.3's own
  model of the same configuration (below), records ``detector/<family>/predict`` (``model.predict`` of one image,
  no gradients, eval mode: network + decoding + NMS) and ``detector/<family>/train_step`` (a batch of 2 images
  with 10 random boxes each: ``model.loss``, the sum of the losses, ``backward`` and an SGD step with learning
  rate 0, so that every repeat sees the same weights); ``detector`` selects the three.

Whole detectors (mmdet's configs through ``mmdet::`` bases; both sides get the same random normalised input, the
data pipeline and ``data_preprocessor`` are not timed):

================  =================================================================  =====================  =====
family            mmdet 3.3 config                                                   mmkp config            input
================  =================================================================  =====================  =====
cornernet         ``cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py``        ``configs/cornernet/``   511
                                                                                     ``..._10xb5-500k``
centernet         ``centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py``         ``configs/centernet/``   512
                                                                                     ``r18-dcnv2_6xb19...``
fcos              ``fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py``                       ``configs/fcos/``        800x
                                                                                     ``r50-caffe..._8xb2-1x``  1216
================  =================================================================  =====================  =====

Weights: the backbones' ``Pretrained`` ``init_cfg`` is removed on both sides (nothing is downloaded), both models
are built and ``init_weights``-ed after ``torch.manual_seed(0)``, and mmdet's state dict is copied into mmkp's
model for every tensor whose name (mmdet's CornerNet head names renamed to mmkp's, see :func:`mmdet_to_mmkp_key`)
and shape match. The record's ``weights`` field says how many of mmkp's tensors were copied; the rest stays
random (seeded), which the printed note says.

``speedup = baseline_s / mmkp_s`` (> 1: mmkp is faster); times are medians of ``--repeats`` runs after one
warm-up run (:func:`mmkp.utils.benchmark.median_time`). ``--quick`` (a smoke run): 1 repeat, detectors at about a
quarter of the side (CornerNet 127, CenterNet 128, FCOS 192 x 320), the saccade suite skipped unless named in
``--only``; ops and heads keep their shapes (their scripts fix them) with 1 repeat.
"""
import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.abspath(osp.join(HERE, '..', '..'))
for path in (REPO, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from mmkp.utils.benchmark import format_table, make_record, median_time, write_json  # noqa: E402

#: family -> (mmdet config, mmkp config, full input (H, W), quick input (H, W))
DETECTORS: Dict[str, Tuple[str, str, Tuple[int, int], Tuple[int, int]]] = {
    'cornernet': ('mmdet::cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py',
                  'configs/cornernet/cornernet_hourglass104_10xb5-500k_coco.py', (511, 511), (127, 127)),
    'centernet': ('mmdet::centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py',
                  'configs/centernet/centernet_r18-dcnv2_6xb19-crop512-140e_coco.py', (512, 512), (128, 128)),
    'fcos': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
             'configs/fcos/fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py', (800, 1216), (192, 320)),
}
#: mmdet ``CenterNetHead`` branch -> mmkp ``CenterHeatmapHead`` branch list (stack 0)
CENTERNET_HEADS = dict(heatmap_head='heatmap_branches', wh_head='size_branches', offset_head='offset_branches')
SUITES = ('ops', 'heads', 'saccade') + tuple(f'detector/{f}' for f in DETECTORS)
TRAIN_BATCH, TRAIN_BOXES, NUM_CLASSES = 2, 10, 80


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--json', default=None, help='write all records as JSON to this path')
    parser.add_argument('--quick', action='store_true', help='1 repeat, smaller detector inputs (smoke run)')
    parser.add_argument('--only', nargs='+', default=None, choices=SUITES + ('detector', ),
                        help='suites to run (default: all; "detector" = the three detectors)')
    parser.add_argument('--repeats', type=int, default=None, help='timed repeats (default 3, --quick 1)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='device to run on')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error('--repeats must be >= 1')
    if args.only is None:
        args.only = [s for s in SUITES if not (args.quick and s == 'saccade')]
    else:
        args.only = [s for name in args.only for s in ([f'detector/{f}' for f in DETECTORS]
                                                        if name == 'detector' else [name])]
    return args


# ------------------------------------------------------------------------------------------------ other scripts
def _load_script(name: str):
    """Import ``tools/analysis_tools/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f'_bench_{name}', osp.join(HERE, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, argv: List[str], prefix: str) -> List[Dict[str, object]]:
    """Run ``<name>.main(argv + ['--json', tmp])`` in this process; its records, names prefixed with ``prefix``.

    Raises:
        RuntimeError: when the script returns a non-zero status or writes no records.
    """
    import json
    module = _load_script(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'records.json')
        status = module.main(argv + ['--json', path])
        if status not in (None, 0) or not osp.isfile(path):
            raise RuntimeError(f'benchmark_all: {name}.py {" ".join(argv)} failed (status {status}, no records)')
        with open(path, encoding='utf-8') as f:
            records = json.load(f)
    for r in records:
        r['name'] = prefix + r['name']
        r['suite'] = name
    return records


# ------------------------------------------------------------------------------------------------ detectors
def mmdet_to_mmkp_key(key: str) -> str:
    """mmdet 3.3 head parameter names -> mmkp's; other keys as they are (the backbones and necks are mmdet's;
    ``FCOSPointHead`` keeps mmdet's ``FCOSHead`` names, and adds the tower convolutions' biases that mmdet's lack).

    ``CenterNetHead``: ``bbox_head.{heatmap,wh,offset}_head.*`` -> ``bbox_head.{heatmap,size,offset}_branches.0.*``
    (:data:`CENTERNET_HEADS`; mmkp's ``CenterHeatmapHead`` holds one branch per stack).

    ``CornerHead``:

    ``bbox_head.tl_pool.0.direction1_conv.*`` -> ``bbox_head.tl_modules.0.p1_conv1.*`` (``direction2_conv`` ->
    ``p2_conv1``, ``aftpool_conv`` -> ``p_conv1``); ``bbox_head.tl_{heat,emb,off}.S.I.*`` ->
    ``bbox_head.tl_{heats,tags,offs}.S.I.*`` with the last 1x1 conv (``I = 1``, a ``ConvModule`` without norm or
    activation in mmdet) a plain ``Conv2d`` in mmkp (``...S.1.conv.weight`` -> ``...S.1.weight``).
    """
    parts = key.split('.')
    if parts[0] == 'bbox_head' and len(parts) > 2 and parts[1] in CENTERNET_HEADS:
        return '.'.join(['bbox_head', CENTERNET_HEADS[parts[1]], '0'] + parts[2:])
    if parts[0] != 'bbox_head' or len(parts) < 4 or parts[1].count('_') != 1:
        return key
    corner, branch = parts[1].split('_')
    if corner not in ('tl', 'br'):
        return key
    if branch == 'pool':
        rename = dict(direction1_conv='p1_conv1', direction2_conv='p2_conv1', aftpool_conv='p_conv1')
        parts[1] = f'{corner}_modules'
        parts[3] = rename.get(parts[3], parts[3])
        return '.'.join(parts)
    if branch not in ('heat', 'emb', 'off'):
        return key
    parts[1] = f'{corner}_' + dict(heat='heats', emb='tags', off='offs')[branch]
    if parts[3] == '1' and len(parts) > 5 and parts[4] == 'conv':
        del parts[4]
    return '.'.join(parts)


def _quiet_init(model) -> None:
    logging.disable(logging.INFO)  # init_weights logs every parameter
    try:
        model.init_weights()
    finally:
        logging.disable(logging.NOTSET)


def build_pair(family: str, device: str):
    """(mmdet model, mmkp model, note): seeded inits, mmdet's tensors copied into mmkp's where names and shapes
    match; ``note`` e.g. ``'weights: 1234/1234 tensors copied from mmdet'``."""
    from mmengine.config import Config
    from mmengine.hub import get_config

    from mmkp.converters.core import build_model_from_config
    from mmkp.utils import get_data_root
    get_data_root(set_env=True)
    mmdet_cfg, mmkp_cfg = DETECTORS[family][:2]
    models = []
    for config in (mmdet_cfg, osp.join(REPO, mmkp_cfg)):
        cfg = get_config(config) if config.startswith('mmdet::') else Config.fromfile(config)
        cfg.model.backbone.init_cfg = None  # no download of ImageNet weights
        torch.manual_seed(0)
        model = build_model_from_config(cfg)
        _quiet_init(model)
        models.append(model)
    ref, ours = models
    theirs = {mmdet_to_mmkp_key(k): v for k, v in ref.state_dict().items()}
    own = ours.state_dict()
    shared = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    ours.load_state_dict(shared, strict=False)
    note = f'weights: {len(shared)}/{len(own)} mmkp tensors copied from mmdet'
    if len(shared) < len(own):
        note += f' (the other {len(own) - len(shared)} random, seeded)'
    return ref.to(device), ours.to(device), note


def make_inputs(batch: int, shape: Tuple[int, int], device: str, with_boxes: bool, seed: int = 0):
    """(inputs (B, 3, H, W) standard normal, data samples with metas, and random boxes when ``with_boxes``)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    inputs = torch.randn(batch, 3, h, w, generator=g).to(device)
    samples = []
    for _ in range(batch):
        sample = DetDataSample()
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                                 scale_factor=(1.0, 1.0), border=(0, h, 0, w), flip=False, img_id=0))
        if with_boxes:
            side = torch.tensor([w, h], dtype=torch.float32)
            wh = (0.05 + 0.4 * torch.rand(TRAIN_BOXES, 2, generator=g)) * side
            xy = torch.rand(TRAIN_BOXES, 2, generator=g) * (side - wh)
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1).to(device),
                labels=torch.randint(0, NUM_CLASSES, (TRAIN_BOXES, ), generator=g).to(device))
        samples.append(sample)
    return inputs, samples


def detector_records(family: str, args) -> Tuple[List[Dict[str, object]], str]:
    """The ``detector/<family>/predict`` and ``/train_step`` records, and the weights note."""
    ref, ours, note = build_pair(family, args.device)
    shape = DETECTORS[family][3 if args.quick else 2]
    t = lambda fn: median_time(fn, repeats=args.repeats, warmup=1, device=args.device)  # noqa: E731
    shape_str = f'{shape[0]}x{shape[1]}'

    inputs, samples = make_inputs(1, shape, args.device, with_boxes=False)
    times = []
    for model in (ours, ref):
        model.eval()

        def predict(model=model):
            with torch.no_grad():
                return model.predict(inputs, samples, rescale=True)

        times.append(t(predict))
    predict_rec = make_record(f'detector/{family}/predict', f'1x3x{shape_str}', times[0], times[1])

    inputs, samples = make_inputs(TRAIN_BATCH, shape, args.device, with_boxes=True, seed=1)
    times = []
    for model in (ours, ref):
        model.train()
        optim = torch.optim.SGD(model.parameters(), lr=0.0)

        def step(model=model, optim=optim):
            optim.zero_grad()
            losses = model.loss(inputs, samples)
            loss, _ = model.parse_losses(losses)
            loss.backward()
            optim.step()

        times.append(t(step))
    train_rec = make_record(f'detector/{family}/train_step', f'{TRAIN_BATCH}x3x{shape_str}, {TRAIN_BOXES} boxes/img',
                            times[0], times[1])
    for r in (predict_rec, train_rec):
        r.update(suite='detector', weights=note, mmdet_config=DETECTORS[family][0], mmkp_config=DETECTORS[family][1])
    del ref, ours
    return [predict_rec, train_rec], note


# ------------------------------------------------------------------------------------------------ main
def run(args) -> Tuple[List[Dict[str, object]], Dict[str, str], List[str]]:
    """Run the selected suites; (records, notes per record name, failures).

    A suite (a head family for ``heads``) that raises is reported in ``failures`` (``'<suite>: <error>'``) and
    the others still run; :func:`main` then returns 1.
    """
    common = ['--device', args.device, '--repeats', str(args.repeats)]
    threads = ['--threads', str(args.threads)] if args.threads is not None else []
    records: List[Dict[str, object]] = []
    notes: Dict[str, str] = {}
    failures: List[str] = []
    for suite in args.only:
        print(f'\n==== {suite} ({args.device}, {torch.get_num_threads()} threads, {args.repeats} repeat(s))',
              flush=True)
        try:
            if suite == 'ops':
                records += run_script('benchmark_ops', common + threads, 'ops/')
            elif suite == 'heads':
                # one family at a time, so that one failing family does not lose the others
                for family in _load_script('benchmark_heads').FAMILIES:
                    try:
                        records += run_script('benchmark_heads', common + ['--only', family], 'heads/')
                    except Exception as exc:  # noqa: BLE001  (reported, the run goes on)
                        failures.append(f'heads/{family}: {type(exc).__name__}: {exc}')
                        print(f'FAILED {failures[-1]}', flush=True)
            elif suite == 'saccade':
                records += run_script('benchmark_saccade', ['--device', args.device, '--images', '1'] + threads, '')
            else:
                family = suite.split('/', 1)[1]
                recs, note = detector_records(family, args)
                print(format_table(recs))
                print(note, flush=True)
                for r in recs:
                    notes[r['name']] = note.split(' (')[0].replace('weights: ', '').replace(' mmkp tensors copied',
                                                                                             '')
                records += recs
        except Exception as exc:  # noqa: BLE001  (reported, the run goes on)
            failures.append(f'{suite}: {type(exc).__name__}: {exc}')
            print(f'FAILED {failures[-1]}', flush=True)
        if args.json:  # after every suite, so that an interrupted run keeps what it measured
            write_json(records, args.json)
    return records, notes, failures


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('--device cuda: no CUDA device available', file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import mmkp  # noqa: F401  (registers mmkp modules)
    records, notes, failures = run(args)
    print(f'\n==== all ({args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}, {args.repeats} repeat(s)'
          f'{", quick" if args.quick else ""}); speedup = baseline / mmkp; detector note: tensors copied from mmdet')
    print(format_table(records, extra=notes))
    if args.json:
        write_json(records, args.json)
        print(f'\nwrote {len(records)} records to {args.json}')
    if failures:
        print('\nFAILED (no records):\n' + '\n'.join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
