"""TripletHead: CenterNet keypoint-triplet layout, targets (Duankaiwen/CenterNet@3ad3a10 ``sample/coco.py``: radius
of the uncorrected formula at IoU 0.7 for all three keypoints, center sigma d / 5 at the integer scaled center),
losses against the original formulas (``models/py_utils/kp.py::AELoss``), one-object images, prediction and the
test-time merge with the center-region check."""
import math

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import TripletHead
from mmkp.models.layers import CascadeCornerPoolModule, CenterPoolModule
from mmkp.models.task_modules.coders import CornerPairDecoder, center_region_check
from tests.test_models.test_dense_heads.test_corner_pool_head import original_corner_loss, small_inputs
from tests.test_models.test_task_modules.test_gaussian_heatmap_assigner import ref_draw_gaussian, ref_radius

SMALL = dict(num_classes=3, in_channels=16, num_stacks=2, pool_channels=8, feat_channels=16)
KEYPOINTS = ('top_left', 'bottom_right', 'center')


def test_layout():
    head = TripletHead(**SMALL)
    head.init_weights()
    assert head.keypoints == KEYPOINTS
    assert all(isinstance(m, CascadeCornerPoolModule) for m in list(head.tl_modules) + list(head.br_modules))
    assert all(isinstance(m, CenterPoolModule) for m in head.ct_modules)
    assert not hasattr(head, 'ct_tags') and len(head.tl_tags) == 2 and len(head.ct_offs) == 2
    for heats in (head.tl_heats, head.br_heats, head.ct_heats):
        for h in heats:
            assert torch.allclose(h[-1].bias, torch.full((3, ), -2.19))
    a = head.assigner
    assert (a.radius_formula, a.min_overlap) == ('original', 0.7)
    assert a.sigma_factor == dict(top_left=6.0, bottom_right=6.0, center=5.0)
    assert type(head.decoder).__name__ == 'TripletDecoder' and head.decoder.topk == 70
    with pytest.raises(ValueError, match='center'):
        TripletHead(**SMALL, keypoints=('top_left', 'bottom_right'))
    with pytest.raises(ValueError, match='TripletDecoder'):
        TripletHead(**SMALL, test_cfg=dict(decoder=dict(type='CornerPairDecoder')))


def test_center_targets_single_object():
    """One object: center Gaussian (sigma = d / 5) at int of the scaled center, radius as the corners'."""
    head = TripletHead(**SMALL)
    box = [10.0, 12.0, 40.0, 44.0]
    gts = [InstanceData(bboxes=torch.tensor([box]), labels=torch.tensor([1]))]
    metas = [dict(batch_input_shape=(63, 63), img_shape=(63, 63), pad_shape=(63, 63), ori_shape=(63, 63))]
    t = head.assigner.assign(gts, (16, 16), (63, 63), 3, metas)
    ratio = 16 / 63
    x1, y1, x2, y2 = (v * ratio for v in box)
    radius = max(0, int(ref_radius((math.ceil(y2 - y1), math.ceil(x2 - x1)), 0.7, 'original')))
    cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
    ref = np.zeros((16, 16), np.float32)
    ref_draw_gaussian(ref, (cx, cy), radius, 5)
    assert np.allclose(t.heatmaps['center'][0, 1].numpy(), ref, atol=1e-6)
    ref_tl = np.zeros((16, 16), np.float32)
    ref_draw_gaussian(ref_tl, (int(x1), int(y1)), radius, 6)
    assert np.allclose(t.heatmaps['top_left'][0, 1].numpy(), ref_tl, atol=1e-6)
    assert t.indices['center'][0, 0].item() == cy * 16 + cx
    assert t.offsets['center'][0, 0].tolist() == pytest.approx([(x1 + x2) / 2 - cx, (y1 + y2) / 2 - cy], abs=1e-5)


@pytest.mark.parametrize('batch', [1, 2])
def test_losses_equal_the_original_formulas(batch):
    torch.manual_seed(0)
    head = TripletHead(**SMALL)
    head.init_weights()
    feats, gts, metas = small_inputs(batch=batch)
    if batch == 1:  # a single image with a single object
        gts = [InstanceData(bboxes=torch.tensor([[10.0, 12.0, 40.0, 44.0]]), labels=torch.tensor([1]))]
    outs = head(feats)
    losses = head.loss_by_feat(outs, gts, metas)
    targets = head.assigner.assign(gts, (16, 16), (63, 63), 3, metas)
    assert targets.mask.sum() == (1 if batch == 1 else 4)
    ref = original_corner_loss(outs, targets, 2, keypoints=KEYPOINTS)
    for ours, theirs in (('loss_heatmap', 'focal'), ('loss_pull', 'pull'), ('loss_offset', 'off')):
        assert losses[ours].item() == pytest.approx(ref[theirs].item(), rel=1e-5), ours
    assert losses['loss_push'].item() == pytest.approx(ref['push'].item(), rel=1e-3)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert head.ct_heats[0][-1].weight.grad.abs().sum() > 0 and head.ct_modules[1].p_conv1.conv.weight.grad is not None


def test_predict_and_tta_merge():
    torch.manual_seed(0)
    head = TripletHead(**SMALL, test_cfg=dict(decoder=dict(type='TripletDecoder', topk=20, center_topk=20,
                                                           num_dets=100)))
    head.eval()
    feats, _, metas = small_inputs(batch=2)
    samples = []
    for i, m in enumerate(metas):
        s = DetDataSample()
        s.set_metainfo(dict(m, flip=i == 1, flip_direction='horizontal'))
        samples.append(s)
    with torch.no_grad():
        final = head.predict(feats, samples, rescale=True)
        raw = head.predict(feats, samples, rescale=True, with_nms=False)
    assert all(len(r) <= 100 for r in final) and head.decoder.center_check  # the flag is restored
    assert 'centers' in raw[0].metainfo and raw[0].centers.shape == (20, 2)
    views = [head.unflip_detections(r, s.metainfo) for r, s in zip(raw, samples)]
    width = 63
    assert torch.allclose(views[1].centers[:, 0], width - raw[1].centers[:, 0])  # mmdet's bbox_flip: W - x
    assert torch.equal(views[0].centers, raw[0].centers)
    merged = head.merge_view_detections(views, [s.metainfo for s in samples])
    # reference: concatenation, then the check against the centers of view 0 then view 1
    boxes = torch.cat([v.bboxes for v in views])
    scores = torch.cat([v.scores for v in views])
    labels = torch.cat([v.labels for v in views])
    new, _ = center_region_check(boxes[None], scores[None], labels[None],
                                 torch.cat([v.centers for v in views])[None],
                                 torch.cat([v.center_scores for v in views])[None],
                                 torch.cat([v.center_labels for v in views])[None])
    keep = new[0] > -1
    assert keep.any()
    assert torch.equal(merged.bboxes, boxes[keep]) and torch.equal(merged.scores, new[0][keep])
    with pytest.raises(KeyError, match='centers'):
        head.merge_view_detections([InstanceData(bboxes=boxes, scores=scores, labels=labels)], [{}])


def test_centers_come_from_scale_1_only():
    metas = [dict(scale_factor=(s, s)) for s in (1.0, 1.0, 0.6, 0.6, 1.8, 1.8)]
    assert TripletHead.center_views(metas) == [0, 1]
    assert TripletHead.center_views([dict(scale_factor=(0.3, 0.3))] * 2) == [0, 1]  # one scale: every view
    assert TripletHead.center_views([{}, {}]) == [0, 1]
    with pytest.raises(ValueError, match='scale 1'):
        TripletHead.center_views([dict(scale_factor=(s, s)) for s in (0.6, 1.2)])
    # the merge reads the centers of the scale-1 views only: a box whose only matching center is at scale 0.6 goes
    head = TripletHead(**SMALL)
    box = dict(bboxes=torch.tensor([[0., 0., 30., 30.]]), scores=torch.tensor([0.6]), labels=torch.tensor([0]))
    views = []
    for k, center in enumerate(([100., 100.], [15., 15.])):
        v = InstanceData(**box)
        v.set_metainfo(dict(centers=torch.tensor([center]), center_scores=torch.tensor([0.9]),
                            center_labels=torch.tensor([0])))
        views.append(v)
    two_scales = [dict(scale_factor=(1.0, 1.0)), dict(scale_factor=(0.6, 0.6))]
    assert len(head.merge_view_detections(views, two_scales)) == 0
    merged = head.merge_view_detections(views, [dict(scale_factor=(0.6, 0.6)), dict(scale_factor=(1.0, 1.0))])
    assert merged.scores.tolist() == pytest.approx([(2 * 0.6 + 0.9) / 3] * 2)


def test_center_check_off_decodes_as_cornernet():
    torch.manual_seed(0)
    dec = dict(type='TripletDecoder', topk=20, center_topk=20, num_dets=100, outside_margin=None)
    head = TripletHead(**SMALL, test_cfg=dict(decoder=dict(dec, center_check=False)))
    head.eval()
    feats, _, metas = small_inputs(batch=1)
    sample = DetDataSample()
    sample.set_metainfo(metas[0])
    with torch.no_grad():
        got = head.predict(feats, [sample], rescale=True)[0]
        outputs = head(feats)
    assert not head.decoder.center_check
    # reference: CornerNet's pair decoder on the same maps, then the same soft-NMS
    pairs = CornerPairDecoder(topk=20, num_dets=100).decode_outputs(outputs.stack(-1), metas, rescale=True)[0]
    ref = head.nms_detections(pairs)
    assert len(got) > 0 and torch.equal(got.bboxes, ref.bboxes) and torch.equal(got.scores, ref.scores)
    # and the check, when on, changes the result on the same maps
    head.decoder.center_check = True
    with torch.no_grad():
        checked = head.predict(feats, [sample], rescale=True)[0]
    assert len(checked) < len(got) or not torch.equal(checked.scores, got.scores[:len(checked)])
