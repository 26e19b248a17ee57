"""CornerPoolHead: named outputs, losses against the original formulas (princeton-vl/CornerNet-Lite@6a54505
``core/models/py_utils/losses.py``) with two and three keypoint types and ignore masks, gradients, prediction, NMS,
options and errors. The key mapping of the released checkpoints is tested with the converters
(``tests/test_converters``)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import CornerPoolHead, KeypointMaps
from tests.test_models.test_task_modules.test_gaussian_heatmap_assigner import ref_draw_gaussian, ref_radius

SMALL_HEAD = dict(num_classes=3, in_channels=16, num_stacks=2, pool_channels=8, feat_channels=16)


def small_inputs(batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(batch, 16, size, size, generator=g) for _ in range(2)]
    gts = [
        InstanceData(
            bboxes=torch.tensor([[3.0, 5.0, 30.0, 41.0], [20.0, 8.0, 60.0, 50.0], [33.3, 40.1, 62.9, 63.0]]),
            labels=torch.tensor([0, 2, 1])),
        InstanceData(bboxes=torch.tensor([[10.0, 12.0, 40.0, 44.0]]), labels=torch.tensor([1])),
    ][:batch]
    metas = [dict(batch_input_shape=(63, 63), img_shape=(63, 63), pad_shape=(63, 63), ori_shape=(63, 63))] * batch
    return feats, gts, metas


def original_corner_loss(outs, targets, num_stacks, keypoints=('top_left', 'bottom_right'), valid=None):
    """CornerNet-Lite ``CornerNet_Loss.forward`` written out (clamped sigmoid focal loss per keypoint type / N_pos,
    pull/push 0.1 summed over images, offsets SmoothL1 sum / (#objects + 1e-4); / #stacks). ``valid``: per keypoint
    type the (B, C, H, W) mask of CornerNet-Saccade's ``_focal_loss_mask`` (both terms masked, N_pos all positives).
    The keypoint triplets (Duankaiwen/CenterNet@3ad3a10 ``models/py_utils/kp.py::AELoss``) add the center's focal
    and offset terms the same way."""
    heats = {k: outs[k]['heatmap'] for k in keypoints}
    offs = {k: outs[k]['offset'] for k in keypoints}
    tl_tags, br_tags = outs['top_left']['embedding'], outs['bottom_right']['embedding']
    mask = targets.mask

    def focal(logits, gt, weight=None):
        p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
        pos = gt.eq(1)
        num_pos = pos.sum()
        weight = torch.ones_like(gt) if weight is None else weight
        pos_loss = (torch.log(p) * (1 - p)**2 * weight)[pos].sum()
        neg_loss = (torch.log(1 - p) * p**2 * (1 - gt)**4 * weight)[~pos].sum()
        return -(pos_loss + neg_loss) / num_pos

    def gather(feat, ind):  # (B, C, H, W), (B, M) -> (B, M, C)
        flat = feat.flatten(2).transpose(1, 2)
        return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, flat.shape[2]))

    total = dict(focal=0.0, pull=0.0, push=0.0, off=0.0)
    tl_ind, br_ind = targets.indices['top_left'], targets.indices['bottom_right']
    num = mask.sum()
    for s in range(num_stacks):
        total['focal'] += sum(
            focal(heats[k][s], targets.heatmaps[k], None if valid is None else valid[k]) for k in keypoints)
        t0, t1 = gather(tl_tags[s], tl_ind)[..., 0], gather(br_tags[s], br_ind)[..., 0]
        for i in range(mask.shape[0]):
            n = int(mask[i].sum())
            e0, e1 = t0[i][mask[i]], t1[i][mask[i]]
            mean = (e0 + e1) / 2
            total['pull'] += 0.1 * (((e0 - mean)**2).sum() + ((e1 - mean)**2).sum()) / (n + 1e-4)
            dist = F.relu(1 - (mean[:, None] - mean[None, :]).abs()) - 1 / (n + 1e-4)
            total['push'] += 0.1 * dist.sum() / (n * (n - 1) + 1e-4)
        for off, gt_off, ind in ((offs[k][s], targets.offsets[k], targets.indices[k]) for k in keypoints):
            total['off'] += F.smooth_l1_loss(gather(off, ind)[mask], gt_off[mask], reduction='sum') / (num + 1e-4)
    return {k: v / num_stacks for k, v in total.items()}


def test_losses_equal_the_original_formulas():
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    head.init_weights()
    feats, gts, metas = small_inputs()
    outs = head(feats)
    losses = head.loss_by_feat(outs, gts, metas)
    targets = head.assigner.assign(gts, (16, 16), (63, 63), 3, metas)
    assert targets.mask.sum() == 4
    ref = original_corner_loss(outs, targets, 2)
    assert losses['loss_heatmap'].item() == pytest.approx(ref['focal'].item(), rel=1e-5)
    assert losses['loss_pull'].item() == pytest.approx(ref['pull'].item(), rel=1e-5)
    assert losses['loss_push'].item() == pytest.approx(ref['push'].item(), rel=1e-5)
    assert losses['loss_offset'].item() == pytest.approx(ref['off'].item(), rel=1e-5)
    # a one-object image adds the original's constant push of ~0.1 * 0.9999 (image 2 has one object; float32
    # cancellation in 1 - 1 / 1.0001 leaves ~1e-3 relative error, as in the original)
    second = KeypointMaps({k: {b: [m[1:] for m in maps] for b, maps in branches.items()}
                           for k, branches in outs.items()})
    one = head.loss_by_feat(second, gts[1:], metas[1:])
    assert one['loss_push'].item() == pytest.approx(0.1 * 0.99990001, rel=1e-3)


def test_reduction_options():
    torch.manual_seed(0)
    feats, gts, metas = small_inputs()
    default = CornerPoolHead(**SMALL_HEAD)
    other = CornerPoolHead(**SMALL_HEAD, corner_reduction='mean', stack_reduction='sum', offset_norm='clamped')
    other.load_state_dict(default.state_dict())
    outs = default(feats)
    a = default.loss_by_feat(outs, gts, metas)
    b = other.loss_by_feat(outs, gts, metas)
    assert b['loss_heatmap'].item() == pytest.approx(a['loss_heatmap'].item(), rel=1e-6)  # x 1/2 x 2
    assert b['loss_pull'].item() == pytest.approx(2 * a['loss_pull'].item(), rel=1e-6)
    # corner mean x stack sum cancel; 4 objects: / max(4, 1) instead of / (4 + 1e-4)
    assert b['loss_offset'].item() == pytest.approx(a['loss_offset'].item() * (4 + 1e-4) / 4, rel=1e-6)


def test_gradients_reach_every_stack_and_branch():
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    feats, gts, metas = small_inputs()
    feats = [f.requires_grad_(True) for f in feats]
    losses = head.loss_by_feat(head(feats), gts, metas)
    sum(losses.values()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name.endswith('weight') and 'bn' not in name:
            assert p.grad.abs().sum() > 0, name
    assert all(f.grad.abs().sum() > 0 for f in feats)


def test_init_is_pytorch_default_with_heatmap_bias():
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    head.init_weights()
    for heat in list(head.tl_heats) + list(head.br_heats):
        assert torch.equal(heat[-1].bias, torch.full((3, ), -2.19))
    conv = head.tl_modules[0].p1_conv1.conv  # a ConvModule: Kaiming-normal replaced by PyTorch's uniform default
    bound = 1 / (conv.in_channels * 9)**0.5
    assert conv.weight.abs().max() <= bound


def _samples(metas):
    out = []
    for meta in metas:
        s = DetDataSample()
        s.set_metainfo(meta)
        out.append(s)
    return out


def test_predict_decodes_the_last_stack_only():
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD, test_cfg=dict(corner_topk=10, distance_threshold=0.5, max_per_img=20))
    head.init_weights()
    head.eval()
    assert head.decoder.topk == 10
    feats, _, metas = small_inputs()
    with torch.no_grad():
        results = head.predict(feats, _samples(metas), rescale=True)
        again = head.predict([torch.zeros_like(feats[0]), feats[1]], _samples(metas), rescale=True)
        raw = head.predict(feats, _samples(metas), rescale=True, with_nms=False)
        by_feat = head.predict_by_feat(head(feats), batch_img_metas=metas, rescale=True)
    for r, a, b in zip(results, again, by_feat):
        assert len(r) <= 20 and torch.equal(r.bboxes, a.bboxes) and torch.equal(r.bboxes, b.bboxes)
        assert set(r.keys()) == {'bboxes', 'scores', 'labels'}
    assert {'tl_scores', 'br_scores'} <= set(raw[0].keys()) and len(raw[0]) <= 100


def test_bad_config_and_input_raise():
    with pytest.raises(ValueError, match='pred_kernel_size'):
        CornerPoolHead(3, pred_kernel_size=5)
    with pytest.raises(ValueError, match='stack_reduction'):
        CornerPoolHead(3, stack_reduction='max')
    with pytest.raises(ValueError, match='num_stacks'):
        CornerPoolHead(3, num_stacks=0)
    head = CornerPoolHead(**SMALL_HEAD)
    feats, _, _ = small_inputs()
    with pytest.raises(ValueError, match='num_stacks=2 but got 1'):
        head(feats[:1])
    with pytest.raises(ValueError, match='num_stacks=2 but got 1'):
        head.predict(feats[:1], _samples(small_inputs()[2]))
    with pytest.raises(ValueError, match='keypoints'):
        CornerPoolHead(3, keypoints=('top_left', 'center'))
    with pytest.raises(ValueError, match='keypoints'):
        CornerPoolHead(3, keypoints=('top_left', 'bottom_right', 'middle'))
    with pytest.raises(ValueError, match=r"also needs \['center'\]"):
        CornerPoolHead(3, keypoints=('top_left', 'bottom_right', 'center'),
                       train_cfg=dict(assigner=dict(type='GaussianHeatmapAssigner',
                                                    keypoints=('top_left', 'bottom_right'))))
    # mmdet's flat test_cfg keys reach the default decoder; a decoder config replaces it
    mmdet_style = CornerPoolHead(3, test_cfg=ConfigDict(corner_topk=7, distance_threshold=0.25,
                                                        local_maximum_kernel=5))
    assert (mmdet_style.decoder.topk, mmdet_style.decoder.ae_threshold,
            mmdet_style.decoder.local_maximum_kernel) == (7, 0.25, 5)
    explicit = CornerPoolHead(3, test_cfg=dict(corner_topk=7, decoder=dict(type='CornerPairDecoder', topk=9)))
    assert explicit.decoder.topk == 9


def test_images_without_objects():
    """The COCO configs train on every image (``filter_empty_gt=False``): empty images give heatmap losses only."""
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    feats, gts, metas = small_inputs()
    empty = InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))
    for batch_gts in ([empty, empty], [gts[0], empty]):
        losses = head.loss_by_feat(head(feats), batch_gts, metas)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        if batch_gts[0] is empty:
            assert losses['loss_pull'] == 0 and losses['loss_push'] == 0 and losses['loss_offset'] == 0
            assert losses['loss_heatmap'] > 0


def test_outputs_are_named_per_keypoint_branch_and_stack():
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    feats, _, _ = small_inputs()
    outs = head(feats)
    assert isinstance(outs, KeypointMaps) and outs.num_stacks == 2
    assert {k: sorted(v) for k, v in outs.items()} == {
        'top_left': ['embedding', 'heatmap', 'offset'], 'bottom_right': ['embedding', 'heatmap', 'offset']}
    assert outs['top_left']['heatmap'][0].shape == (2, 3, 16, 16)
    assert outs['bottom_right']['embedding'][1].shape == (2, 1, 16, 16)
    assert outs['bottom_right']['offset'][1].shape == (2, 2, 16, 16)
    # each map is the output of its own modules: the bottom-right offset of stack 1 from br_modules.1 / br_offs.1
    with torch.no_grad():
        expected = head.br_offs[1](head.br_modules[1](feats[1]))
    assert torch.equal(outs['bottom_right']['offset'][1], expected)
    # mmdet CornerHead's positional order, and back
    tup = outs.to_tuple()
    assert tup[3][1] is outs['bottom_right']['embedding'][1] and tup[4][0] is outs['top_left']['offset'][0]
    again = KeypointMaps.from_tuple(tup)
    assert all(again[k][b][s] is outs[k][b][s] for k in outs for b in outs[k] for s in range(2))
    assert torch.equal(outs.stack(-1)['top_left']['heatmap'], outs['top_left']['heatmap'][1])
    # module names are the originals' (released checkpoints map one to one)
    names = {k.split('.')[0] for k in head.state_dict()}
    assert names == {f'{p}_{s}' for p in ('tl', 'br') for s in ('modules', 'heats', 'tags', 'offs')}


def three_keypoint_head(**kwargs):
    return CornerPoolHead(**SMALL_HEAD, keypoints=('top_left', 'bottom_right', 'center'),
                          corner_pool=dict(type='CascadeCornerPoolModule'), center_pool=dict(type='CenterPoolModule'),
                          **kwargs)


def test_center_keypoint_type_adds_its_modules_targets_and_losses():
    """The keypoint-triplet layout by configuration: center pooling, center heatmap and offset, no embedding."""
    torch.manual_seed(0)
    head = three_keypoint_head()
    head.init_weights()
    assert type(head.tl_modules[0]).__name__ == 'CascadeCornerPoolModule'
    assert type(head.ct_modules[1]).__name__ == 'CenterPoolModule'
    assert not hasattr(head, 'ct_tags') and len(head.ct_heats) == 2 and len(head.ct_offs) == 2
    assert torch.equal(head.ct_heats[0][-1].bias, torch.full((3, ), -2.19))
    feats, gts, metas = small_inputs()
    outs = head(feats)
    assert sorted(outs['center']) == ['heatmap', 'offset']
    losses = head.loss_by_feat(outs, gts, metas)
    targets = head.assigner.assign(gts, (16, 16), (63, 63), 3, metas)
    assert head.assigner.keypoints == ('top_left', 'bottom_right', 'center')
    ref = original_corner_loss(outs, targets, 2, keypoints=('top_left', 'bottom_right', 'center'))
    assert losses['loss_heatmap'].item() == pytest.approx(ref['focal'].item(), rel=1e-5)
    assert losses['loss_offset'].item() == pytest.approx(ref['off'].item(), rel=1e-5)
    assert losses['loss_pull'].item() == pytest.approx(ref['pull'].item(), rel=1e-5)
    two = original_corner_loss(outs, targets, 2)
    assert ref['focal'].item() > two['focal'].item() * 1.2  # the center term is really there
    sum(losses.values()).backward()
    assert head.ct_offs[0][-1].weight.grad.abs().sum() > 0 and head.ct_modules[1].conv2.conv.weight.grad is not None


def ref_valid_mask(ignored, labels, num_classes, out_hw, in_hw, keypoint):
    """Per box, written out: CornerNet-Saccade's valid mask, 0 under an ignored object's Gaussian (corrected radius
    formula, IoU 0.3, sigma d / 6, boxes clipped to the input, ratio out / in)."""
    heat = np.zeros((num_classes, ) + out_hw, np.float32)
    ratio_x, ratio_y = out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]
    for box, label in zip(ignored.tolist(), labels.tolist()):
        x1, x2 = [min(max(v, 0), in_hw[1] - 1) * ratio_x for v in box[0::2]]
        y1, y2 = [min(max(v, 0), in_hw[0] - 1) * ratio_y for v in box[1::2]]
        radius = max(0, int(ref_radius((math.ceil(y2 - y1), math.ceil(x2 - x1)), 0.3, 'corrected')))
        x, y = dict(top_left=(x1, y1), bottom_right=(x2, y2))[keypoint]
        ref_draw_gaussian(heat[label], (int(x), int(y)), radius, 6.0)
    return torch.from_numpy((heat == 0).astype(np.float32))


def test_ignored_objects_mask_the_heatmap_loss():
    """``mask_ignored``: the masked focal loss of CornerNet-Saccade (princeton-vl/CornerNet-Lite@6a54505
    ``core/models/py_utils/losses.py::_focal_loss_mask``), the mask drawn from ``batch_gt_instances_ignore``."""
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD, mask_ignored=True)
    plain = CornerPoolHead(**SMALL_HEAD)
    plain.load_state_dict(head.state_dict())
    feats, gts, metas = small_inputs()
    ignored = [InstanceData(bboxes=torch.tensor([[40.0, 2.0, 62.0, 30.0], [1.0, 30.0, 12.0, 60.0]]),
                            labels=torch.tensor([2, 0])),
               InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))]
    outs = head(feats)
    losses = head.loss_by_feat(outs, gts, metas, ignored)
    targets = head.assigner.assign(gts, (16, 16), (63, 63), 3, metas)
    valid = {}
    for k in ('top_left', 'bottom_right'):
        valid[k] = torch.stack([ref_valid_mask(ig.bboxes, ig.labels, 3, (16, 16), (63, 63), k) for ig in ignored])
        assert (valid[k][0] == 0).sum() >= 5 and valid[k][1].eq(1).all()
    ref = original_corner_loss(outs, targets, 2, valid=valid)
    assert losses['loss_heatmap'].item() == pytest.approx(ref['focal'].item(), rel=1e-5)
    assert losses['loss_pull'].item() == pytest.approx(ref['pull'].item(), rel=1e-5)
    unmasked = original_corner_loss(outs, targets, 2)
    assert abs(unmasked['focal'].item() - ref['focal'].item()) > 1e-3
    # without mask_ignored (CornerNet, Squeeze: no ignore regions) the ignored objects change nothing
    assert plain.loss_by_feat(outs, gts, metas, ignored)['loss_heatmap'].item() == pytest.approx(
        unmasked['focal'].item(), rel=1e-5)
    # through head.loss: ignored_instances of the data samples
    samples = _samples(metas)
    for sample, gt, ig in zip(samples, gts, ignored):
        sample.gt_instances = gt
        sample.ignored_instances = ig
    through_samples = head.loss(feats, samples)
    assert through_samples['loss_heatmap'].item() == pytest.approx(losses['loss_heatmap'].item(), rel=1e-6)


def test_boxes_as_horizontal_boxes():
    """``boxtype2tensor=False`` pipelines give ``HorizontalBoxes``: the targets read them with ``get_box_tensor``."""
    from mmdet.structures.bbox import HorizontalBoxes
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    feats, gts, metas = small_inputs()
    boxed = [InstanceData(bboxes=HorizontalBoxes(gt.bboxes), labels=gt.labels) for gt in gts]
    outs = head(feats)
    a, b = head.loss_by_feat(outs, gts, metas), head.loss_by_feat(outs, boxed, metas)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nms_hooks_remove_and_keep_the_right_boxes():
    head = CornerPoolHead(**SMALL_HEAD, test_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=2))
    raw = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [30., 30., 40., 40.],
                                            [0., 0., 10., 10.], [50., 50., 60., 60.]]),
                       scores=torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1]), labels=torch.tensor([0, 0, 0, 1, 0]),
                       tl_scores=torch.rand(5), br_scores=torch.rand(5))
    out = head.nms_detections(raw)
    # box 1 overlaps box 0 (same class): removed; then the top 2 by score
    assert out.scores.tolist() == pytest.approx([0.9, 0.7]) and out.labels.tolist() == [0, 0]
    assert len(head.nms_detections(raw, None, 100)) == 5  # no NMS
    meta = dict(flip=True, flip_direction='horizontal', ori_shape=(50, 100))
    flipped = head.unflip_detections(raw, meta)
    assert flipped.bboxes[0].tolist() == [90., 0., 100., 10.] and raw.bboxes[0].tolist() == [0., 0., 10., 10.]
    assert head.unflip_detections(raw, dict(flip=False)) is raw
    merged = head.merge_view_detections([raw, flipped], [dict(flip=False), meta])
    assert len(merged) == 10 and set(merged.keys()) == {'bboxes', 'scores', 'labels', 'tl_scores', 'br_scores'}
