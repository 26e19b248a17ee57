"""Speed of CornerNet-Saccade's test procedure against single-scale CornerNet, on the same images, in the same run.

CornerNet-Lite's claim (Law et al., 2019, section 4.1): CornerNet-Saccade processes about 6x fewer pixels than
CornerNet and is about 6x faster. Measured here:

* **saccade**: mmkp's ``CornerNetSaccade.predict`` with the paper config
  (``configs/cornernet_saccade/cornernet-saccade_hourglass54_4xb12-500k_coco.py``: Hourglass-54, 117.0 M parameters)
  on the original image, at ``k_max`` 30 and 10 (at most that many zoomed 255 x 255 crops after the two downsized
  views of 192 and 255);
* **baseline**: mmkp's single-scale CornerNet (``configs/cornernet/cornernet_hourglass104_10xb5-500k_coco.py``:
  Hourglass-104, 201 M parameters) on the same image resized to 511 x 511 (the training resolution), no flip.

The images are the first ``--images`` of coco128 (COCO images, about 640 x 480). Pre-processing (decoding the JPEG,
normalisation) is excluded on both sides: the models get normalised tensors.

Per image, wall time is split (``mmkp`` column / records) into

* ``network``: backbone and head forward passes (views and crops; CornerNet: one pass);
* ``cropping``: cutting the views and the zoomed crops (``mmkp.ops.saccade_crop``, one call per image and step);
* ``decoding``: corner pairing of every view and crop (``CornerPairDecoder.decode_outputs``);
* ``merging``: the rest: attention peaks -> locations, coarse detections -> locations, location suppression,
  back-mapping, per-class soft-NMS and the top 100 (CornerNet: soft-NMS and the top 100);

and the pixels the network processed (views and crops at 255 x 255; CornerNet 511 x 511).

Untrained weights (no ``--checkpoint``, seeded ``init_weights``) give attention maps of about sigmoid(-2.19) = 0.1
and no confident detection, so that the paper thresholds would select no crop at all: without a checkpoint the
attention threshold is set to 0 (every attention peak is a location), so that each image gets exactly ``k_max``
crops, the most work the procedure does. With ``--checkpoint`` the config's thresholds are kept and the number of
crops actually cut is printed.

Records (``--json PATH``, see :mod:`mmkp.utils.benchmark`): ``saccade/k{K}/total`` (mmkp_s = Saccade seconds per
image, baseline_s = CornerNet seconds per image, ``speedup`` = CornerNet time / Saccade time), with the split, the
crops per image and the pixels of both in extra fields; ``saccade/k{K}/network`` (network time against CornerNet's
network time).

Usage::

    python tools/analysis_tools/benchmark_saccade.py [--images 2] [--device cpu|cuda] [--checkpoint CKPT]
        [--threads T] [--json PATH]
"""
import argparse
import logging
import os
import os.path as osp
import sys
import time
from typing import List, Optional

import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.utils.benchmark import PartTimer  # noqa: E402

SACCADE_CONFIG = 'configs/cornernet_saccade/cornernet-saccade_hourglass54_4xb12-500k_coco.py'
CORNERNET_CONFIG = 'configs/cornernet/cornernet_hourglass104_10xb5-500k_coco.py'
K_MAX = (30, 10)
CORNERNET_SIZE = 511
PARTS = ('network', 'cropping', 'decoding', 'merging')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='CornerNet-Saccade inference against single-scale CornerNet')
    parser.add_argument('--images', type=int, default=2, help='coco128 images to time (after one warm-up image)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='device to run on')
    parser.add_argument('--checkpoint', default=None, help='CornerNet-Saccade weights (default: seeded init)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--json', default=None, help='write the records as JSON to this path')
    return parser.parse_args(argv)


def load_images(num: int, device: str) -> List[torch.Tensor]:
    """The first ``num`` (+1 warm-up) coco128 train2017 images as (3, H, W) float BGR tensors (0-255)."""
    import mmcv

    from mmkp.utils import get_data_root
    folder = osp.join(get_data_root(set_env=True), 'coco128', 'train2017')
    if not osp.isdir(folder):
        raise SystemExit(f'benchmark_saccade: no coco128 images in {folder} (set MMKP_DATA)')
    names = sorted(f for f in os.listdir(folder) if f.endswith('.jpg'))[:num + 1]
    return [torch.from_numpy(mmcv.imread(osp.join(folder, n))).permute(2, 0, 1).float().to(device) for n in names]


def build(config: str, device: str, cfg_options: Optional[dict] = None, checkpoint: Optional[str] = None):
    from mmengine.runner import load_checkpoint

    from mmkp.converters.core import build_model_from_config
    torch.manual_seed(0)
    model = build_model_from_config(osp.join(REPO, config), cfg_options=cfg_options)
    logging.disable(logging.INFO)  # init_weights logs every parameter of the 117 M / 201 M models
    try:
        model.init_weights()
    finally:
        logging.disable(logging.NOTSET)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.to(device).eval()


def samples_for(shape, ori_shape):
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    h, w = shape
    sample.set_metainfo(dict(img_shape=(h, w), ori_shape=ori_shape, batch_input_shape=(h, w), pad_shape=(h, w),
                             scale_factor=(w / ori_shape[1], h / ori_shape[0]), border=(0, h, 0, w)))
    return [sample]


def time_predict(model, images, timer: PartTimer, device: str, size: Optional[int] = None):
    """Mean seconds per image of ``model.predict`` (total and per part of :data:`PARTS`) and mean number of crops
    ``_crop`` cut per image; the first image is the warm-up.

    Args:
        size (int, optional): resize every image to ``size`` x ``size`` first (CornerNet at 511); None: the original
            image (the saccade test).
    """
    import torch.nn.functional as F
    pre = model.data_preprocessor
    per_image, crops = [], []
    for idx, img in enumerate(images):
        ori_shape = tuple(img.shape[1:])
        if size is not None:
            img = F.interpolate(img[None], size=(size, size), mode='bilinear', align_corners=False)[0]
        x = ((img - pre.mean.to(device)) / pre.std.to(device))[None]
        samples = samples_for(tuple(img.shape[1:]), ori_shape)
        timer.reset()
        timer.sync()
        start = time.perf_counter()
        with torch.no_grad():
            model.predict(x, samples)
        timer.sync()
        total = time.perf_counter() - start
        if idx == 0:
            continue
        parts = {p: timer.seconds[p] for p in PARTS if p != 'merging'}  # 0 for parts the model has not
        parts['merging'] = total - sum(parts.values())
        per_image.append(dict(total=total, **parts))
        crops.append(timer.calls['cropping'])
    mean = {k: sum(r[k] for r in per_image) / len(per_image) for k in per_image[0]}
    return mean, sum(crops) / len(crops)


def instrument(model, timer: PartTimer, saccade: bool) -> None:
    head = model.bbox_head
    timer.wrap(model, 'extract_feat', 'network')
    timer.wrap(head, 'forward_single', 'network')
    timer.wrap(head.decoder, 'decode_outputs', 'decoding')
    if saccade:
        timer.wrap(head, 'forward_attention', 'network')
        # one call per image and step; counted as the number of crops it cuts
        timer.wrap(model, '_crop', 'cropping', count=lambda args: len(args[2]))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('--device cuda: no CUDA device available', file=sys.stderr)
        return 2
    if args.images < 1:
        print('--images must be >= 1', file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from mmkp.utils.benchmark import format_table, make_record, write_json

    images = load_images(args.images, args.device)
    print(f'device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{len(images) - 1} coco128 image(s) after one warm-up image, '
          f'{"weights " + args.checkpoint if args.checkpoint else "seeded untrained weights, attention threshold 0"}')

    timer = PartTimer(args.device)
    cornernet = build(CORNERNET_CONFIG, args.device)
    instrument(cornernet, timer, saccade=False)
    base, _ = time_predict(cornernet, images, timer, args.device, size=CORNERNET_SIZE)
    del cornernet
    base_pixels = CORNERNET_SIZE * CORNERNET_SIZE

    records, lines = [], []
    for k_max in K_MAX:
        options = {'model.test_cfg.saccade.k_max': k_max}
        if not args.checkpoint:
            options['model.test_cfg.saccade.att_threshold'] = 0.0
        model = build(SACCADE_CONFIG, args.device, options, args.checkpoint)
        instrument(model, timer, saccade=True)
        sac, cut = time_predict(model, images, timer, args.device)
        crops = cut - len(model.saccade_cfg['init_sizes'])  # _crop also cuts the downsized views
        crop_size = model.saccade_cfg['crop_size']
        pixels = (len(model.saccade_cfg['init_sizes']) + crops) * crop_size * crop_size
        del model
        split = {p: sac[p] for p in PARTS}
        total = make_record(f'saccade/k{k_max}/total', f'coco128 x{len(images) - 1}', sac['total'], base['total'])
        total.update(split_s=split, baseline_split_s={p: base[p] for p in PARTS}, crops_per_image=crops,
                     pixels=pixels, baseline_pixels=base_pixels, pixel_ratio=base_pixels / pixels)
        records.append(total)
        records.append(make_record(f'saccade/k{k_max}/network', f'{crops:.1f} crops + 2 views', sac['network'],
                                   base['network']))
        lines.append(f'k_max {k_max}: {crops:.1f} crops per image, ' + ', '.join(
            f'{p} {1e3 * sac[p]:.1f} ms' for p in PARTS) + f'; {pixels / 1e6:.2f} Mpixel through the network '
            f'(CornerNet {base_pixels / 1e6:.2f} Mpixel: ratio CornerNet / Saccade {base_pixels / pixels:.2f})')
    print(format_table(records))
    print('\nper image (Saccade):')
    print('\n'.join(lines))
    print('CornerNet (511 x 511): ' + ', '.join(f'{p} {1e3 * base[p]:.1f} ms' for p in PARTS if p != 'cropping'))
    print('speedup = CornerNet time / Saccade time')
    if args.json:
        write_json(records, args.json)
        print(f'\nrecords written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
