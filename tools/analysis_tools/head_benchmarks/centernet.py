"""CenterNet (objects as points) head: mmkp's CenterHeatmapHead (targets, losses, decoding) against mmdet 3.3's
CenterNetHead, same inputs, same run.

Setting: the training batch of mmdet's config (16 images at 512 x 512, 128 x 128 maps, 80 classes), 20 or 100 random
boxes per image, random head outputs:

* ``centernet/targets-{n}boxes``: mmkp's ``GaussianHeatmapAssigner.assign`` (whole batch at once; the heatmaps of
  the (image, class) planes that hold an object only) against mmdet's ``CenterNetHead.get_targets`` (a Python loop
  per image and box, each box drawn with ``gen_gaussian_target``, on a dense 16 x 80 x 128 x 128 heatmap);
* ``centernet/targets+loss-{n}boxes``: targets and the three losses end to end, ``CenterHeatmapHead.loss_by_feat``
  on logits against ``CenterNetHead.loss_by_feat``; mmdet's losses take probabilities (its ``forward`` applies the
  sigmoid), mmkp's take logits, so mmdet's timing includes the sigmoid of the heatmap;
* ``centernet/decode``: one image, ``predict_by_feat`` of each (3 x 3 peaks, top 100, boxes mapped back with the
  ``border`` and ``scale_factor`` metas, no NMS) on random logits, again with mmdet's sigmoid in its timing;
  ``centernet/decode-blobs`` the same on heatmaps of smooth blobs plus noise (many high pixels that are not peaks,
  like a trained network's: mmkp's candidate peak search then needs its larger candidate set);
  ``centernet/decode-16imgs`` the batch of 16 (mmdet decodes image by image).

Both heads are configured with mmdet's choices (corrected radius formula, IoU 0.3, boxes not clipped, no probability
clamp in the focal loss, no clipping of the decoded boxes). The boxes have sides of whole cells (multiples of the
stride 4, 8-300 px) and corners on a quarter-pixel grid, for which the two target rules agree exactly (mmdet takes the
radius of the scaled size, mmkp of its ceiling: equal for whole cells); the heatmap targets and the decoded boxes are
checked equal before timing, so that both sides do the same work.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmkp.utils.benchmark import make_record, median_time

BATCH, SIZE, FEAT, NUM_CLASSES, STRIDE = 16, 512, 128, 80, 4
MMDET_ASSIGNER = dict(type='GaussianHeatmapAssigner', keypoints=('center', ), radius_formula='corrected',
                      min_overlap=0.3, sigma_factor=6.0, clip_to=None)


def random_gts(num_boxes: int, device: str, seed: int = 0) -> List[InstanceData]:
    """``BATCH`` images of ``num_boxes`` boxes: sides 8-300 px in multiples of 4, corners on a 0.25 px grid, inside
    the 512 x 512 input; random labels of 80 classes.

    Sizes whose radius lies within 1e-4 of an integer are redrawn: there mmdet's float32 radius and mmkp's float64
    one can truncate to different integers (60 x 23 cells: 7.0 in float32, 6.999999999999998 in float64).
    """
    from mmkp.models.utils.gaussian import gaussian_radius
    g = torch.Generator().manual_seed(seed)
    gts = []
    for _ in range(BATCH):
        wh = torch.randint(2, 76, (4 * num_boxes, 2), generator=g).double()
        radius = gaussian_radius(wh[:, 1], wh[:, 0], 0.3, 'corrected')
        wh = wh[(radius - radius.round()).abs() > 1e-4][:num_boxes].float() * STRIDE
        if len(wh) < num_boxes:
            raise RuntimeError(f'centernet: only {len(wh)} of {num_boxes} box sizes drawn')
        xy = (torch.rand(num_boxes, 2, generator=g) * (SIZE - wh) * 4).floor() / 4
        labels = torch.randint(0, NUM_CLASSES, (num_boxes, ), generator=g)
        gts.append(InstanceData(bboxes=torch.cat([xy, xy + wh], 1).to(device), labels=labels.to(device)))
    return gts


def random_outputs(batch: int, device: str, blobs: bool = False, seed: int = 0) -> List[torch.Tensor]:
    """Heatmap logits (batch, 80, 128, 128), sizes (batch, 2, 128, 128) of 0-40 cells, offsets in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    heat = torch.randn(batch, NUM_CLASSES, FEAT, FEAT, generator=g) - 3
    if blobs:
        spikes = (torch.rand(batch, NUM_CLASSES, FEAT, FEAT, generator=g) > 0.9995).float() * 400
        heat = heat + F.avg_pool2d(spikes, 9, 1, 4)
    size = torch.rand(batch, 2, FEAT, FEAT, generator=g) * 40
    offset = torch.rand(batch, 2, FEAT, FEAT, generator=g)
    return [heat.to(device), size.to(device), offset.to(device)]


def metas(batch: int) -> List[dict]:
    """512 x 512 inputs holding a 400 x 300 image scaled by 0.8 (so 320 x 240) centred (``border`` = [top, bottom,
    left, right] of ``RandomCenterCropPad``)."""
    return [dict(batch_input_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), ori_shape=(300, 400),
                 scale_factor=(0.8, 0.8), border=[136, 376, 96, 416])] * batch


def run(args) -> List[Dict[str, object]]:
    from mmdet.models.dense_heads import CenterNetHead

    from mmkp.models.dense_heads import CenterHeatmapHead
    device = args.device
    repeats = args.repeats
    baseline = CenterNetHead(8, 8, NUM_CLASSES, test_cfg=ConfigDict(topk=100, local_maximum_kernel=3,
                                                                     max_per_img=100)).to(device)
    ours = CenterHeatmapHead(
        NUM_CLASSES,
        8,
        feat_channels=8,
        loss_heatmap=dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=0.0),
        train_cfg=dict(assigner=MMDET_ASSIGNER),
        test_cfg=dict(decoder=dict(type='CenterHeatmapDecoder', topk=100, local_maximum_kernel=3, clip_border=False),
                      max_per_img=100, nms=None)).to(device)
    batch_metas = metas(BATCH)
    feat_shape = (BATCH, NUM_CLASSES, FEAT, FEAT)
    # Warm the allocator first: glibc serves the first large (84 MB heatmap) blocks with fresh mmaps and page
    # faults, later ones from its heap; without this the record timed first pays for it.
    for warm in (random_gts(20, device, seed=1), random_gts(100, device, seed=1)):
        for _ in range(3):
            ours.assigner.assign(warm, (FEAT, FEAT), (SIZE, SIZE), NUM_CLASSES, batch_metas)
            baseline.get_targets([g.bboxes for g in warm], [g.labels for g in warm], feat_shape, (SIZE, SIZE))
    records = []
    for num_boxes in (20, 100):  # all target timings first: the losses' large temporaries disturb the allocator
        gts = random_gts(num_boxes, device)
        gt_bboxes = [gt.bboxes for gt in gts]
        gt_labels = [gt.labels for gt in gts]

        def our_targets():
            return ours.assigner.assign(gts, (FEAT, FEAT), (SIZE, SIZE), NUM_CLASSES, batch_metas)

        def their_targets():
            return baseline.get_targets(gt_bboxes, gt_labels, feat_shape, (SIZE, SIZE))

        ref, got = their_targets()[0], our_targets()
        if not torch.allclose(ref['center_heatmap_target'], got.heatmaps['center'], rtol=0, atol=1e-6):
            raise RuntimeError('centernet: heatmap targets differ: the benchmark would compare different work')
        del ref, got  # 84 MB each: keeping them alive changes how the allocator serves the timed calls
        records.append(
            make_record(f'centernet/targets-{num_boxes}boxes',
                        f'{BATCH}x{NUM_CLASSES}x{FEAT}x{FEAT}, {num_boxes} boxes',
                        median_time(our_targets, repeats, warmup=3, device=device),
                        median_time(their_targets, repeats, warmup=3, device=device)))
    train_maps = random_outputs(BATCH, device)
    for num_boxes in (20, 100):
        gts = random_gts(num_boxes, device)

        def our_loss():
            return ours.loss_by_feat(*[[m] for m in train_maps], gts, batch_metas)

        def their_loss():
            heat, size, offset = train_maps
            return baseline.loss_by_feat([heat.sigmoid()], [size], [offset], gts, batch_metas)

        records.append(
            make_record(f'centernet/targets+loss-{num_boxes}boxes',
                        f'{BATCH}x{NUM_CLASSES}x{FEAT}x{FEAT}, {num_boxes} boxes',
                        median_time(our_loss, repeats, device=device),
                        median_time(their_loss, repeats, device=device)))

    for name, batch, blobs in (('centernet/decode', 1, False), ('centernet/decode-blobs', 1, True),
                               ('centernet/decode-16imgs', BATCH, False)):
        maps = random_outputs(batch, device, blobs=blobs, seed=1)
        meta = metas(batch)

        def our_decode():
            return ours.predict_by_feat([maps[0]], [maps[1]], [maps[2]], batch_img_metas=meta, rescale=True)

        def their_decode():
            return baseline.predict_by_feat([maps[0].sigmoid()], [maps[1]], [maps[2]], batch_img_metas=meta,
                                            rescale=True)

        for a, b in zip(our_decode(), their_decode()):
            if not (len(a) == len(b) and torch.allclose(a.bboxes, b.bboxes, rtol=0, atol=1e-3)
                    and torch.equal(a.labels, b.labels)):
                raise RuntimeError(f'{name}: mmkp and mmdet detections differ: the benchmark would compare '
                                   'different work')
        records.append(
            make_record(name, f'{batch}x{NUM_CLASSES}x{FEAT}x{FEAT}, K=100',
                        median_time(our_decode, repeats, device=device),
                        median_time(their_decode, repeats, device=device)))
    return records
