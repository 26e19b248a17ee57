"""Speed of mmkp's compiled keypoint ops against plain baselines, measured in the same run.

Baselines:

* ``directional_pool``: one ``mmcv.ops.CornerPool`` (cummax); both sides run all four directions and the time is
  the mean per direction.
* ``corner_pool``: two CornerPools and an add (``top(a) + left(b)``); mmkp: one fused ``corner_pool`` call.
* ``center_pool``: four CornerPools (top then bottom on ``a``, left then right on ``b``) and an add; mmkp: one fused
  ``center_pool`` call.
* ``saccade_crop``: the original's per-crop loop in plain PyTorch (CornerNet-Lite ``crop_image_gpu``): clip the
  window to the image, slice it, ``F.interpolate(mode='bilinear', align_corners=False)`` it and paste it into a zero
  canvas, one crop at a time; mmkp: one ``saccade_crop`` call for all crops.

``fwd`` times the forward on inputs without gradients; ``fwdbwd`` a forward plus ``torch.autograd.grad`` of every
input. Times are medians of ``--repeats`` runs after two warm-up runs.

Memory-bandwidth estimate: for each mmkp op, the bytes it must move at least (every input read once, every output
written once, forward and backward) divided by its time, against the copy bandwidth of the machine measured in the
same run (``dst.copy_(src)`` of a 256 MiB tensor, counting its read and its write).

Usage::

    python tools/analysis_tools/benchmark_ops.py [--device cpu|cuda] [--json PATH] [--repeats N] [--threads T]
"""
import argparse
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.ops import CornerPool

from mmkp.ops import center_pool, corner_pool, directional_pool, ext_loaded, saccade_crop
from mmkp.utils.benchmark import format_table, make_record, median_time, write_json

POOL_SHAPES = [(2, 128, 128, 128), (6, 128, 128, 128), (2, 256, 64, 64)]
# (images shape, number of crops): a COCO-sized image with CornerNet-Saccade's 30 zoomed crops, and a batch of two
SACCADE_CASES = [((1, 3, 480, 640), 30), ((2, 3, 800, 1024), 60)]
SACCADE_OUT = 255


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark mmkp keypoint ops against mmcv / plain PyTorch')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='device to run on')
    parser.add_argument('--json', default=None, help='write the records as JSON to this path')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per measurement (median)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    return parser.parse_args(argv)


def grad_of(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], grad_out: torch.Tensor):
    """A callable running fn forward and backward w.r.t. every input."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]

    def run():
        return torch.autograd.grad(fn(*leaves), leaves, grad_out)

    return run


def copy_bandwidth(device: str, repeats: int) -> float:
    """Bytes per second of ``dst.copy_(src)`` on 256 MiB (read + write counted)."""
    n = 64 * 1024 * 1024
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    t = median_time(lambda: dst.copy_(src), repeats=max(repeats, 5), device=device)
    return 2 * src.numel() * src.element_size() / t


def pool_benchmarks(shape, device, repeats) -> List[Tuple[str, str, float, float, float]]:
    """(name, shape, mmkp_s, baseline_s, bytes moved by mmkp) for the three pools on one shape."""
    g = torch.Generator().manual_seed(0)
    a, b, grad_out = (torch.randn(shape, generator=g).to(device) for _ in range(3))
    size = a.numel() * a.element_size()
    pools = {d: CornerPool(d) for d in ('top', 'bottom', 'left', 'right')}
    shape_str = 'x'.join(map(str, shape))
    t = lambda fn: median_time(fn, repeats=repeats, device=device)  # noqa: E731
    rows = []

    # directional: all four directions, mean per direction
    def mmkp_dirs():
        for d in pools:
            directional_pool(a, d)

    def mmcv_dirs():
        for p in pools.values():
            p(a)

    mmkp_dir_bwd = [grad_of(lambda x, d=d: directional_pool(x, d), (a, ), grad_out) for d in pools]
    mmcv_dir_bwd = [grad_of(p, (a, ), grad_out) for p in pools.values()]
    rows.append(('directional_pool/fwd', shape_str, t(mmkp_dirs) / 4, t(mmcv_dirs) / 4, 2 * size))
    rows.append(('directional_pool/fwdbwd', shape_str, t(lambda: [f() for f in mmkp_dir_bwd]) / 4,
                 t(lambda: [f() for f in mmcv_dir_bwd]) / 4, 5 * size))

    # corner: top(a) + left(b)
    def mmcv_corner(x, y):
        return pools['top'](x) + pools['left'](y)

    def mmkp_corner(x, y):
        return corner_pool(x, y, 'top_left')

    rows.append(('corner_pool/fwd', shape_str, t(lambda: mmkp_corner(a, b)), t(lambda: mmcv_corner(a, b)), 3 * size))
    rows.append(('corner_pool/fwdbwd', shape_str, t(grad_of(mmkp_corner, (a, b), grad_out)),
                 t(grad_of(mmcv_corner, (a, b), grad_out)), 8 * size))

    # center: bottom(top(a)) + right(left(b))
    def mmcv_center(x, y):
        return pools['bottom'](pools['top'](x)) + pools['right'](pools['left'](y))

    rows.append(('center_pool/fwd', shape_str, t(lambda: center_pool(a, b)), t(lambda: mmcv_center(a, b)), 3 * size))
    rows.append(('center_pool/fwdbwd', shape_str, t(grad_of(center_pool, (a, b), grad_out)),
                 t(grad_of(mmcv_center, (a, b), grad_out)), 8 * size))
    return rows


def loop_crops(images: torch.Tensor, centers: torch.Tensor, zooms: torch.Tensor, image_inds: torch.Tensor,
               out_size: int) -> torch.Tensor:
    """Baseline: the original's per-crop loop (crop_image_gpu) in plain PyTorch, one F.interpolate per crop."""
    K = centers.size(0)
    _, C, H, W = images.shape
    out = images.new_zeros((K, C, out_size, out_size))
    for k, ((y, x), zoom, n) in enumerate(zip(centers.tolist(), zooms.tolist(), image_inds.tolist())):
        cty, ctx = int(y), int(x)
        side = int(out_size / zoom)
        scale = out_size / side
        x0, x1 = max(0, ctx - side // 2), min(ctx + side // 2, W)
        y0, y1 = max(0, cty - side // 2), min(cty + side // 2, H)
        if x1 <= x0 or y1 <= y0:
            continue
        oy0, oy1 = out_size // 2 - int((cty - y0) * scale), out_size // 2 + int((y1 - cty) * scale)
        ox0, ox1 = out_size // 2 - int((ctx - x0) * scale), out_size // 2 + int((x1 - ctx) * scale)
        if oy1 <= oy0 or ox1 <= ox0:
            continue
        out[k, :, oy0:oy1, ox0:ox1] = F.interpolate(
            images[n:n + 1, :, y0:y1, x0:x1], size=(oy1 - oy0, ox1 - ox0), mode='bilinear', align_corners=False)[0]
    return out


def saccade_benchmarks(images_shape, num_crops, device, repeats):
    g = torch.Generator().manual_seed(1)
    N, C, H, W = images_shape
    images = torch.rand(images_shape, generator=g).to(device)
    centers = (torch.rand(num_crops, 2, generator=g) * torch.tensor([H, W])).to(device)
    zooms = torch.tensor([1.0, 2.0, 4.0, 0.5, 1.5])[torch.arange(num_crops) % 5].to(device)
    image_inds = (torch.arange(num_crops) % N).to(device)
    grad_out = torch.randn(num_crops, C, SACCADE_OUT, SACCADE_OUT, generator=g).to(device)
    shape_str = f'img {N}x{C}x{H}x{W}, K={num_crops}'
    t = lambda fn: median_time(fn, repeats=repeats, device=device)  # noqa: E731

    def mmkp_fn(im):
        return saccade_crop(im, centers, zooms, SACCADE_OUT, image_inds)[0]

    def loop_fn(im):
        return loop_crops(im, centers, zooms, image_inds, SACCADE_OUT)

    out_bytes = grad_out.numel() * grad_out.element_size()
    img_bytes = images.numel() * images.element_size()
    return [
        ('saccade_crop/fwd', shape_str, t(lambda: mmkp_fn(images)), t(lambda: loop_fn(images)), out_bytes + img_bytes),
        ('saccade_crop/fwdbwd', shape_str, t(grad_of(mmkp_fn, (images, ), grad_out)),
         t(grad_of(loop_fn, (images, ), grad_out)), 2 * out_bytes + 2 * img_bytes),
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('--device cuda: no CUDA device available', file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not ext_loaded():
        print('warning: mmkp._ext is not built; the mmkp column times the pure-PyTorch references', file=sys.stderr)
    print(f'device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} runs')
    bandwidth = copy_bandwidth(args.device, args.repeats)
    print(f'copy bandwidth: {bandwidth / 1e9:.2f} GB/s (dst.copy_(src), 256 MiB, read + write)\n')

    rows = []
    for shape in POOL_SHAPES:
        rows += pool_benchmarks(shape, args.device, args.repeats)
    for images_shape, num_crops in SACCADE_CASES:
        rows += saccade_benchmarks(images_shape, num_crops, args.device, args.repeats)

    records: List[Dict[str, object]] = []
    lines = []
    for name, shape, mmkp_s, base_s, nbytes in rows:
        record = make_record(name, shape, mmkp_s, base_s)
        records.append(record)
        gbps = nbytes / mmkp_s / 1e9
        lines.append(f'{name:<34} {shape:<28} {gbps:>7.2f} GB/s  {100 * gbps * 1e9 / bandwidth:>5.1f}% of copy')
    print(format_table(records))
    print('\nmmkp bytes moved (inputs read once, outputs written once) / time, against the copy bandwidth:')
    print('\n'.join(lines))
    if args.json:
        write_json(records, args.json)
        print(f'\nrecords written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
