"""CornerNet head: mmkp's CornerPoolHead (targets, losses, decoding) against mmdet 3.3's CornerHead, same inputs,
same run.

Setting: the CornerNet training batch of one GPU (6 images at 511 x 511, 128 x 128 maps, 80 classes), 20 or 100
random boxes per image (sides 8-300 px), two hourglass stacks of head outputs (random logits):

* ``cornernet/targets-{n}boxes``: mmkp's ``GaussianHeatmapAssigner.assign`` (corners, whole batch at once) against
  mmdet's ``CornerHead.get_targets(..., with_corner_emb=True)`` (a Python loop per image and box);
* ``cornernet/loss-{n}boxes``: targets + every loss of both stacks, ``CornerPoolHead.loss_by_feat`` against
  ``CornerHead.loss_by_feat`` (whose embedding loss loops over images and objects);
* ``cornernet/decode``: one 511 x 511 image, ``predict_by_feat`` of each (peaks, top 100 corners per type, 10,000
  pairs, 1000 kept, Gaussian soft-NMS, 100 boxes) on random logits;
* ``cornernet/decode-blobs``: the same on heatmaps made of smooth blobs plus noise (many high pixels that are not
  peaks, like a trained network's), where mmkp's candidate peak search needs its larger candidate set.

Both heads are configured alike (mmdet's soft-NMS config, no clipping); mmkp's own defaults differ only in details
that do not change the work done. mmdet allocates and zeroes two dense 6 x 80 x 128 x 128 float32 heatmaps (31 MB
each); mmkp draws only the (image, class) planes that hold an object (``CompactHeatmap``: about 109 of the 480 planes
with 20 random-class boxes per image, 341 with 100), which its focal loss takes as they are. The targets are checked
equal (dense) before timing; ``loss-*`` times targets and losses end to end.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import KeypointMaps
from mmkp.utils.benchmark import make_record, median_time

BATCH, SIZE, FEAT, NUM_CLASSES, STACKS = 6, 511, 128, 80, 2
NMS = dict(type='soft_nms', iou_threshold=0.5, method='gaussian')


def random_gts(num_boxes: int, device: str, seed: int = 0) -> List[InstanceData]:
    """Boxes with sides of 8-300 px anywhere in the 511 x 511 input, random labels."""
    g = torch.Generator().manual_seed(seed)
    gts = []
    for _ in range(BATCH):
        wh = 8 + torch.rand(num_boxes, 2, generator=g) * 292
        xy = torch.rand(num_boxes, 2, generator=g) * (SIZE - wh)
        labels = torch.randint(0, NUM_CLASSES, (num_boxes, ), generator=g)
        gts.append(InstanceData(bboxes=torch.cat([xy, xy + wh], 1).to(device), labels=labels.to(device)))
    return gts


def random_outputs(batch: int, device: str, blobs: bool = False, seed: int = 0) -> List[List[torch.Tensor]]:
    """(tl_heats, br_heats, tl_embs, br_embs, tl_offs, br_offs), each a list over the stacks."""
    g = torch.Generator().manual_seed(seed)

    def heat():
        noise = torch.randn(batch, NUM_CLASSES, FEAT, FEAT, generator=g) - 3
        if blobs:
            spikes = (torch.rand(batch, NUM_CLASSES, FEAT, FEAT, generator=g) > 0.9995).float() * 400
            noise = noise + F.avg_pool2d(spikes, 9, 1, 4)
        return noise.to(device)

    outs = [[heat() for _ in range(STACKS)], [heat() for _ in range(STACKS)]]
    outs += [[(torch.randn(batch, 1, FEAT, FEAT, generator=g) * 0.5).to(device) for _ in range(STACKS)]
             for _ in range(2)]
    outs += [[torch.rand(batch, 2, FEAT, FEAT, generator=g).to(device) for _ in range(STACKS)] for _ in range(2)]
    return outs


def run(args) -> List[Dict[str, object]]:
    from mmdet.models.dense_heads import CornerHead

    from mmkp.models.dense_heads import CornerPoolHead
    device = args.device
    repeats = args.repeats
    baseline = CornerHead(
        NUM_CLASSES,
        8,
        num_feat_levels=STACKS,
        loss_embedding=dict(type='AssociativeEmbeddingLoss', pull_weight=0.1, push_weight=0.1),
        test_cfg=ConfigDict(
            corner_topk=100, local_maximum_kernel=3, distance_threshold=0.5, score_thr=0.05, max_per_img=100,
            nms=NMS)).to(device)
    ours = CornerPoolHead(
        NUM_CLASSES,
        8,
        num_stacks=STACKS,
        pool_channels=8,
        feat_channels=8,
        test_cfg=dict(
            decoder=dict(type='CornerPairDecoder', topk=100, num_dets=1000, clip_border=False), nms=NMS,
            max_per_img=100)).to(device)
    metas = [dict(batch_input_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                  pad_shape=(SIZE, SIZE), border=[0, SIZE, 0, SIZE])] * BATCH
    # Warm the allocator first: glibc serves the first large (31 MB heatmap) blocks with fresh mmaps and page
    # faults, later ones from its heap; without this the record timed first pays for it.
    for warm in (random_gts(20, device, seed=1), random_gts(100, device, seed=1)):
        for _ in range(5):
            ours.assigner.assign(warm, (FEAT, FEAT), (SIZE, SIZE), NUM_CLASSES, metas)
            baseline.get_targets([g.bboxes for g in warm], [g.labels for g in warm],
                                 (BATCH, NUM_CLASSES, FEAT, FEAT), (SIZE, SIZE, 3), with_corner_emb=True)
    target_records, loss_records = [], []
    for num_boxes in (20, 100):  # all target timings first: the losses' large temporaries disturb the allocator
        gts = random_gts(num_boxes, device)
        shape = f'{BATCH}x{NUM_CLASSES}x{FEAT}x{FEAT}, {num_boxes} boxes'
        gt_bboxes = [gt.bboxes for gt in gts]
        gt_labels = [gt.labels for gt in gts]

        def our_targets():
            return ours.assigner.assign(gts, (FEAT, FEAT), (SIZE, SIZE), NUM_CLASSES, metas)

        def their_targets():
            return baseline.get_targets(gt_bboxes, gt_labels, (BATCH, NUM_CLASSES, FEAT, FEAT), (SIZE, SIZE, 3),
                                        with_corner_emb=True)

        # same heatmaps before timing them (mmdet zeroes Gaussian tails below float32 eps, mmkp below float64's)
        ref, got = their_targets(), our_targets()
        for key, name in (('topleft_heatmap', 'top_left'), ('bottomright_heatmap', 'bottom_right')):
            if not torch.allclose(ref[key], got.heatmaps[name], atol=1e-6):
                raise RuntimeError(f'targets differ ({name}): the benchmark compares different work')
        del ref, got  # 124 MB of heatmaps: keeping them alive changes how the allocator serves the timed calls
        target_records.append(
            make_record(f'cornernet/targets-{num_boxes}boxes', shape,
                        median_time(our_targets, repeats, warmup=5, device=device),
                        median_time(their_targets, repeats, warmup=5, device=device)))
    outs = random_outputs(BATCH, device)
    for num_boxes in (20, 100):
        gts = random_gts(num_boxes, device)

        def our_loss():
            return ours.loss_by_feat(KeypointMaps.from_tuple(outs), gts, metas)

        def their_loss():
            return baseline.loss_by_feat(*outs, gts, metas)

        loss_records.append(
            make_record(f'cornernet/loss-{num_boxes}boxes',
                        f'{BATCH}x{NUM_CLASSES}x{FEAT}x{FEAT}, {num_boxes} boxes, {STACKS} stacks',
                        median_time(our_loss, repeats, device=device),
                        median_time(their_loss, repeats, device=device)))
    records = target_records + loss_records

    for name, blobs in (('cornernet/decode', False), ('cornernet/decode-blobs', True)):
        single = [[t[:1] for t in maps] for maps in random_outputs(1, device, blobs=blobs, seed=1)]
        meta = metas[:1]

        def our_decode():
            return ours.predict_by_feat(KeypointMaps.from_tuple(single), batch_img_metas=meta, rescale=True)

        def their_decode():
            return baseline.predict_by_feat(*single, batch_img_metas=meta, rescale=True)

        a, b = our_decode()[0], their_decode()[0]
        if not (len(a) == len(b) and torch.allclose(a.bboxes, b.bboxes.clamp(min=0), atol=1e-3)):
            print(f'note: {name}: mmkp and mmdet detections differ (rejection of zero-size pairs)')
        records.append(
            make_record(name, f'1x{NUM_CLASSES}x{FEAT}x{FEAT}, K=100',
                        median_time(our_decode, repeats, device=device),
                        median_time(their_decode, repeats, device=device)))
    return records
