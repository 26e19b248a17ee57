"""FCOS targets: mmkp's FCOSRangeAssigner (whole batch at once) against mmdet 3.3's FCOSHead.get_targets (one image
at a time), same inputs, same run; time and peak memory.

Setting: batch 8 at an 800 x 1216 input, points of strides 8..128 (100x152 + 50x76 + 25x38 + 13x19 + 7x10 = 20267
per image), 20 or 100 random boxes per image, 80 classes. ``fcos/targets-{n}boxes`` use the "imprv" targets (center
sampling 1.5, ``norm_on_bbox``), ``fcos/targets-{n}boxes-inside`` the original paper's (inside the box). Both sides
get the same points (mmdet's ``MlvlPointGenerator``, made once outside the timing, as ``FCOSPointHead`` makes them
once per batch in ``loss_by_feat``) and produce per-point labels and (l, t, r, b) targets; mmkp also returns
center-ness targets and assigned box indices, which mmdet computes later in its loss, so mmkp's time includes work
mmdet's does not.

Peak memory is the high-water mark of the bytes the CPU allocator holds for tensors during one call, read from
``torch.profiler`` memory events (``profile_memory=True``: every allocation and free, in time order; the running
sum's maximum). It counts the call's intermediates and outputs, not its inputs.
"""
from typing import Callable, Dict, List

import torch
from mmengine.structures import InstanceData

from mmkp.utils.benchmark import make_record, median_time

BATCH, HEIGHT, WIDTH = 8, 800, 1216
STRIDES = (8, 16, 32, 64, 128)
NUM_CLASSES = 80


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """High-water mark of tensor bytes allocated on the CPU by ``fn()`` (its outputs included), in bytes."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == '[memory]']
    current = peak = 0
    for _, nbytes in sorted(events):
        current += nbytes
        peak = max(peak, current)
    return peak


def random_gts(num_boxes: int, device: str, seed: int = 0) -> List[InstanceData]:
    """Boxes of 16-800 px (log-uniform sides) anywhere in the image, random labels."""
    g = torch.Generator().manual_seed(seed)
    gts = []
    for _ in range(BATCH):
        wh = torch.exp(torch.empty(num_boxes, 2).uniform_(2.77, 6.68, generator=g))  # 16 .. 800 px
        xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([WIDTH, HEIGHT]) - wh / 2
        boxes = torch.cat([xy, xy + wh], 1).clamp(min=0)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(max=WIDTH)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(max=HEIGHT)
        labels = torch.randint(0, NUM_CLASSES, (num_boxes, ), generator=g)
        gts.append(InstanceData(bboxes=boxes.to(device), labels=labels.to(device)))
    return gts


def run(args) -> List[Dict[str, object]]:
    from mmdet.models.dense_heads import FCOSHead

    from mmkp.models.task_modules import FCOSRangeAssigner
    device = args.device
    sizes = [((HEIGHT + s - 1) // s, (WIDTH + s - 1) // s) for s in STRIDES]
    shape = f'{BATCH}x{HEIGHT}x{WIDTH}'
    records, notes = [], []
    for center_sampling, suffix in ((True, ''), (False, '-inside')):
        opts = dict(center_sampling=center_sampling, center_sample_radius=1.5, norm_on_bbox=center_sampling)
        baseline = FCOSHead(NUM_CLASSES, 8, feat_channels=8, stacked_convs=1, strides=STRIDES, norm_cfg=None,
                            **opts).to(device)
        assigner = FCOSRangeAssigner(**opts)
        points = baseline.prior_generator.grid_priors(sizes, dtype=torch.float32, device=device)
        for num_boxes in (20, 100):
            gts = random_gts(num_boxes, device)

            def ours():
                return assigner.assign(gts, points, sizes, STRIDES, NUM_CLASSES)

            def theirs():
                return baseline.get_targets(points, gts)

            # same answer before timing it
            ref_labels = torch.cat([lv.view(BATCH, -1) for lv in theirs()[0]], 1)
            assert torch.equal(ours().labels, ref_labels), 'mmkp and mmdet targets differ'
            mmkp_s = median_time(ours, repeats=args.repeats, device=device)
            base_s = median_time(theirs, repeats=args.repeats, device=device)
            name = f'fcos/targets-{num_boxes}boxes{suffix}'
            records.append(make_record(name, shape, mmkp_s, base_s))
            if device == 'cpu':
                mem_ours, mem_theirs = peak_memory_bytes(ours), peak_memory_bytes(theirs)
            else:
                mem_ours, mem_theirs = _cuda_peak(ours), _cuda_peak(theirs)
            notes.append(f'{name:<34} peak memory: mmkp {mem_ours / 2**20:8.1f} MiB, mmdet {mem_theirs / 2**20:8.1f} '
                         f'MiB ({mem_theirs / max(mem_ours, 1):.1f}x); time {1e3 * mmkp_s:.1f} ms vs '
                         f'{1e3 * base_s:.1f} ms ({base_s / mmkp_s:.1f}x)')
            print(notes[-1], flush=True)
    return records


def _cuda_peak(fn: Callable[[], object]) -> int:
    """Peak CUDA bytes allocated during ``fn()`` above what was allocated before it."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before
