"""Detect objects in images with any mmkp model: boxes and class names drawn, and a JSON of predictions per image.

Usage::

    python demo/image_demo.py INPUT CONFIG --weights CKPT [--out-dir DIR] [--score-thr 0.3] [--device cpu]
        [--batch-size 1] [--palette coco] [--no-progress]

``INPUT`` is one image, a folder (its images, not recursive) or a glob pattern in quotes (``'imgs/*.jpg'``,
``'data/**/*.png'``). The model is the test-mode model of ``CONFIG`` (any mmkp family: CenterNet, CornerNet,
CornerNet-Saccade, CornerNet-Squeeze, FCOS; an mmdet config works too) with the weights of ``CKPT`` (a checkpoint of
``tools/train.py``, or a released model converted by ``tools/model_converters/<family>_to_mmkp.py``). Inference runs
through mmdet's :class:`~mmdet.apis.DetInferencer` (the config's test pipeline, mmdet's visualiser, rich's progress
bar over the batches), with mmkp registered and the default scope ``mmdet``.

Written under ``--out-dir`` (default ``outputs/``):

* ``vis/<image name>``: the image with the boxes of score ``>= --score-thr``, their class names and scores;
* ``preds/<image stem>.json``: ``{"img_path", "ori_shape": [h, w], "classes", "labels", "label_names", "scores",
  "bboxes"}``: the same predictions (score ``>= --score-thr``; ``--score-thr 0`` keeps every box the model's
  ``test_cfg`` returns), boxes ``[x1, y1, x2, y2]`` in pixels of the original image, ``labels`` indices into
  ``classes``, sorted by decreasing score.

Boxes are clipped to the image (``0 <= x <= w``, ``0 <= y <= h``); boxes with a non-finite coordinate or inverted
(``x2 < x1`` or ``y2 < y1``: an untrained or badly trained model can regress a negative size) are left out of both,
with a warning giving their number (see :func:`sanitize_instances`).

Class names come from the checkpoint's ``meta['dataset_meta']`` (what ``tools/train.py`` saves); a checkpoint without
them (a converted or hand-made one) takes the classes of the config's test dataset, with a warning.

Exit status 0 on success; 1 with a message naming the path on a missing input, config or checkpoint, or an input
without images.
"""
import argparse
import glob
import os
import os.path as osp
import sys
import warnings
from typing import List, Optional, Sequence

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # run from a checkout without install

#: the image suffixes a folder input is searched for (mmdet's / mmcv's ``IMG_EXTENSIONS``, lower and upper case)
IMG_SUFFIXES = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


class DemoError(Exception):
    """A bad command-line argument (missing file, empty input); the message names it."""


def list_images(input_arg: str) -> List[str]:
    """The image files named by ``INPUT``: one file, a folder's images (sorted, not recursive) or a glob's matches.

    Args:
        input_arg (str): a file, a folder, or a glob pattern (``*``, ``?``, ``[...]``; ``**`` recurses).

    Returns:
        list[str]: image paths, sorted (a single file is returned as given, whatever its suffix).

    Raises:
        DemoError: the path does not exist and is not a pattern, the pattern or folder has no images, or two images
            share a file name (their outputs would overwrite each other).
    """
    if osp.isfile(input_arg):
        files = [input_arg]
    elif osp.isdir(input_arg):
        files = sorted(
            osp.join(input_arg, f) for f in os.listdir(input_arg)
            if f.lower().endswith(IMG_SUFFIXES) and osp.isfile(osp.join(input_arg, f)))
        if not files:
            raise DemoError(f'INPUT {input_arg!r}: a folder without images ({", ".join(IMG_SUFFIXES)})')
    elif glob.has_magic(input_arg):
        files = sorted(f for f in glob.glob(input_arg, recursive=True)
                       if osp.isfile(f) and f.lower().endswith(IMG_SUFFIXES))
        if not files:
            raise DemoError(f'INPUT {input_arg!r}: the pattern matches no image')
    else:
        raise DemoError(f'INPUT {input_arg!r}: no such file or folder')
    names = [osp.basename(f) for f in files]
    stems = [osp.splitext(n)[0] for n in names]
    if len(set(names)) != len(names) or len(set(stems)) != len(stems):
        seen, dup = set(), None
        for f, stem in zip(files, stems):
            if stem in seen:
                dup = f
                break
            seen.add(stem)
        raise DemoError(f'INPUT {input_arg!r}: two images share the name {osp.basename(dup)!r} (up to the suffix); '
                        'their outputs would overwrite each other: run the demo once per folder')
    return files


def sanitize_instances(instances, ori_shape: Sequence[int]):
    """Clip boxes to the image and leave out the inverted or non-finite ones.

    Args:
        instances (InstanceData): predictions with ``bboxes`` (N, 4) ``[x1, y1, x2, y2]`` in pixels of the original
            image, ``scores`` (N,), ``labels`` (N,).
        ori_shape (Sequence[int]): ``(h, w)`` of the original image, pixels.

    Returns:
        tuple[InstanceData, int]: the kept instances (boxes clipped to ``[0, w] x [0, h]``, order kept) and the number
        left out (a non-finite coordinate, or ``x2 < x1`` or ``y2 < y1`` before clipping).
    """
    import torch
    if 'bboxes' not in instances or len(instances) == 0:
        return instances, 0
    boxes = instances.bboxes
    keep = torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    kept = instances[keep]
    h, w = int(ori_shape[0]), int(ori_shape[1])
    clipped = kept.bboxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, w)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, h)
    kept.bboxes = clipped
    return kept, int((~keep).sum())


def _check_file(path: str, what: str) -> None:
    if not osp.isfile(path):
        raise DemoError(f'{what} {path!r}: no such file')


def build_inferencer(config: str, weights: str, device: str = 'cpu', palette: str = 'none',
                     show_progress: bool = True):
    """mmdet's ``DetInferencer`` for ``config`` with mmkp registered, class names from ``weights`` or the config.

    Args:
        config (str): the model's config file.
        weights (str): the checkpoint (``{'state_dict', 'meta'}``, loaded with mmkp's allowlist of safe globals).
        device (str): ``'cpu'``, ``'cuda'``, ``'cuda:1'``... Defaults to ``'cpu'``.
        palette (str): box colours: ``'none'`` (the dataset's, else random), ``'coco'``, ``'random'``...
            Defaults to ``'none'``.
        show_progress (bool): rich's progress bar over the batches. Defaults to True.

    Returns:
        DetInferencer: a subclass whose JSON also names the classes (see the module docstring).

    Raises:
        DemoError: a missing config or checkpoint file.
    """
    _check_file(config, 'CONFIG')
    _check_file(weights, '--weights')
    import mmkp  # noqa: F401  (registers mmkp's modules, installs the checkpoint allowlist)
    from mmdet.apis import DetInferencer
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from mmkp.utils import get_data_root
    get_data_root(set_env=True)  # configs read {{$MMKP_DATA:data}}
    register_all_modules(init_default_scope=False)

    class MMKPDetInferencer(DetInferencer):
        """``DetInferencer`` that falls back to the config's classes, keeps boxes >= a score threshold in the JSON and
        writes the class names and the image's path and size there."""

        json_score_thr = 0.0

        def forward(self, inputs, **kwargs):
            preds = super().forward(inputs, **kwargs)
            for pred in preds:
                pred.pred_instances, dropped = sanitize_instances(pred.pred_instances, pred.ori_shape)
                if dropped:
                    warnings.warn(f'{pred.get("img_path", "image")}: {dropped} inverted or non-finite box(es) '
                                  'left out')
            return preds

        def _load_weights_to_model(self, model, checkpoint, cfg):
            meta = (checkpoint or {}).get('meta', {}) or {}
            if checkpoint is not None and 'dataset_meta' not in meta and 'CLASSES' not in meta:
                dataset_cfg = cfg.test_dataloader.dataset.copy()
                dataset_cfg['lazy_init'] = True
                classes = DATASETS.build(dataset_cfg).metainfo.get('classes')
                if classes:
                    warnings.warn(f'{weights}: no class names in the checkpoint meta; using the {len(classes)} '
                                  'classes of the config\'s test dataset')
                    checkpoint.setdefault('meta', {})['dataset_meta'] = dict(classes=tuple(classes))
            super()._load_weights_to_model(model, checkpoint, cfg)

        def pred2dict(self, data_sample, pred_out_dir=''):
            import mmengine
            result = super().pred2dict(data_sample, '')
            classes = list(self.model.dataset_meta.get('classes', ()))
            keep = [i for i, s in enumerate(result.get('scores', [])) if s >= self.json_score_thr]
            out = dict(
                img_path=data_sample.get('img_path'),
                ori_shape=[int(s) for s in data_sample.ori_shape],
                classes=classes,
                labels=[result['labels'][i] for i in keep],
                label_names=[classes[result['labels'][i]] if result['labels'][i] < len(classes) else None
                             for i in keep],
                scores=[result['scores'][i] for i in keep],
                bboxes=[result['bboxes'][i] for i in keep] if 'bboxes' in result else [])
            if pred_out_dir:
                name = osp.splitext(osp.basename(data_sample.img_path))[0] if data_sample.get('img_path') else \
                    str(self.num_predicted_imgs)
                self.num_predicted_imgs += 1
                mmengine.dump(out, osp.join(pred_out_dir, 'preds', name + '.json'), indent=1)
            return out

    cfg = Config.fromfile(config)
    return MMKPDetInferencer(model=cfg, weights=weights, device=device, scope='mmdet', palette=palette,
                             show_progress=show_progress)


def run_demo(inputs: Sequence[str], inferencer, out_dir: str, score_thr: float = 0.3, batch_size: int = 1) -> dict:
    """Run ``inferencer`` on ``inputs`` and write ``out_dir/vis/*`` and ``out_dir/preds/*.json``.

    Returns:
        dict: ``DetInferencer``'s result (``predictions``: the JSON dicts, in input order).
    """
    inferencer.json_score_thr = score_thr
    return inferencer(
        list(inputs), batch_size=batch_size, out_dir=out_dir, pred_score_thr=score_thr, no_save_pred=False)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in images with an mmkp (or mmdet) model: writes '
                                     'each image with its boxes drawn and a JSON of its predictions')
    parser.add_argument('input', help='an image, a folder of images, or a glob pattern (quoted)')
    parser.add_argument('config', help='the model config')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs', help='output folder (vis/ and preds/); default outputs')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='boxes of lower score are neither drawn nor written; default 0.3')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...; default cpu')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass; default 1')
    parser.add_argument('--palette', default='none', help="box colours: 'none' (the dataset's), 'coco', 'random'")
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if not 0.0 <= args.score_thr <= 1.0:
            raise DemoError(f'--score-thr {args.score_thr}: must lie in [0, 1]')
        if args.batch_size < 1:
            raise DemoError(f'--batch-size {args.batch_size}: must be >= 1')
        files = list_images(args.input)
        inferencer = build_inferencer(args.config, args.weights, args.device, args.palette, not args.no_progress)
    except DemoError as e:
        print(f'image_demo: {e}', file=sys.stderr)
        return 1
    results = run_demo(files, inferencer, args.out_dir, args.score_thr, args.batch_size)
    num_boxes = sum(len(p['scores']) for p in results['predictions'])
    print(f'{len(files)} image(s), {num_boxes} box(es) with score >= {args.score_thr}: drawn in '
          f'{osp.join(args.out_dir, "vis")}, predictions in {osp.join(args.out_dir, "preds")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
