"""mmkp's FCOS against mmdet 3.3's FCOSHead: identical targets, raw outputs, losses and detections.

mmdet's ``FCOSHead.get_targets`` (one image at a time) is the reference of :class:`FCOSRangeAssigner` (the whole
batch at once); mmkp's head with mmdet's weights and mmdet's inference choices (score cls * center-ness, candidates
ranked by cls, mmdet's NMS settings) must give mmdet's boxes.
"""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmkp.models.task_modules import FCOSRangeAssigner

register_all_modules(init_default_scope=False)
STRIDES = (8, 16, 32, 64, 128)
DEFAULT_RANGES = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8))
# bounded ranges: boxes whose max distance exceeds 160 px fit no level
BOUNDED_RANGES = ((-1, 32), (32, 64), (64, 96), (96, 128), (128, 160))
IMG_H, IMG_W = 320, 416
SIZES = [((IMG_H + s - 1) // s, (IMG_W + s - 1) // s) for s in STRIDES]


def random_gts(seed, num_imgs=4, num_classes=5):
    """Boxes of the hard cases: edges on point rows/columns, equal areas, huge, degenerate, outside, no box."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for i in range(num_imgs):
        n = [0, 6, 18, 30][i % 4]
        if n == 0:
            images.append(InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long)))
            continue
        xy = torch.rand(n, 2, generator=g) * torch.tensor([IMG_W, IMG_H]) - 20
        wh = torch.rand(n, 2, generator=g) ** 2 * 400 + 1
        boxes = torch.cat([xy, xy + wh], 1)
        # a third snapped to multiples of 4 px: edges through the points of stride 8 (x = 4, 12, ...) and above
        snap = torch.rand(n, generator=g) < 0.35
        boxes[snap] = (boxes[snap] / 4).round() * 4
        boxes[0] = torch.tensor([4., 12., 68., 92.])  # edges exactly on level-0 points, area 5120
        boxes[1] = torch.tensor([20., 12., 84., 92.])  # same area, overlapping: the tie
        if n > 6:
            boxes[2] = torch.tensor([-40., -30., IMG_W + 500., IMG_H + 600.])  # larger than any bounded range
            boxes[3] = torch.tensor([100., 100., 100., 180.])  # zero width
            boxes[4] = torch.tensor([12., 36., 92., 52.])  # 80 x 16 ...
            boxes[5] = torch.tensor([36., 12., 52., 92.])  # ... and 16 x 80: equal areas, crossing
            boxes[6] = boxes[0]  # a duplicate with (maybe) another label
        labels = torch.randint(0, num_classes, (n, ), generator=g)
        images.append(InstanceData(bboxes=boxes, labels=labels))
    return images


def mmdet_head(**kwargs):
    cfg = dict(type='FCOSHead', num_classes=5, in_channels=16, feat_channels=16, strides=STRIDES,
               norm_cfg=dict(type='GN', num_groups=4))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def per_image(level_tensors, num_imgs):
    """mmdet's level-first (images concatenated per level) targets -> (B, N, ...)."""
    return torch.cat([t.view(num_imgs, -1, *t.shape[1:]) for t in level_tensors], dim=1)


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('ranges', [DEFAULT_RANGES, BOUNDED_RANGES], ids=['default-ranges', 'bounded-ranges'])
@pytest.mark.parametrize('center_sampling', [False, True], ids=['inside-box', 'center-sampling'])
@pytest.mark.parametrize('norm_on_bbox', [False, True], ids=['pixels', 'norm-on-bbox'])
def test_assigner_equals_mmdet_get_targets(seed, ranges, center_sampling, norm_on_bbox):
    gts = random_gts(seed)
    head = mmdet_head(regress_ranges=ranges, center_sampling=center_sampling, norm_on_bbox=norm_on_bbox)
    points = head.prior_generator.grid_priors(SIZES, dtype=torch.float32, device='cpu')
    ref_labels, ref_targets = head.get_targets(points, gts)
    ref_labels, ref_targets = per_image(ref_labels, len(gts)), per_image(ref_targets, len(gts))

    assigner = FCOSRangeAssigner(regress_ranges=ranges, center_sampling=center_sampling, norm_on_bbox=norm_on_bbox)
    ours = assigner.assign(gts, points, SIZES, STRIDES, num_classes=5)  # the same points, as FCOSPointHead does
    assert torch.equal(ours.labels, ref_labels)
    pos = ref_labels < 5
    assert pos.any() and (~pos).any()
    assert torch.equal(ours.bbox_targets[pos], ref_targets[pos])
    assert torch.equal(ours.centerness_targets[pos], head.centerness_target(ref_targets[pos]))
    # the assigned box reproduces the label and the distances of every positive
    b, n = pos.nonzero(as_tuple=True)
    assert (ours.gt_inds[pos] >= 0).all() and (ours.gt_inds[~pos] == -1).all()
    assigned_labels = torch.stack([gts[i].labels[j] for i, j in zip(b.tolist(), ours.gt_inds[pos].tolist())])
    assert torch.equal(assigned_labels, ours.labels[pos])


def test_equal_areas_follow_mmdet_tie_breaking():
    """Many same-area boxes around one point: both pick the first listed box that qualifies."""
    boxes = torch.tensor([[0., 0., 64., 32.], [16., 0., 48., 64.], [8., 8., 72., 40.], [0., 0., 32., 64.]])
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        gt = InstanceData(bboxes=boxes[perm], labels=torch.tensor(perm))
        head = mmdet_head()
        points = head.prior_generator.grid_priors(SIZES, dtype=torch.float32, device='cpu')
        ref_labels = per_image(head.get_targets(points, [gt])[0], 1)
        ours = FCOSRangeAssigner().assign([gt], points, SIZES, STRIDES, num_classes=5)
        assert torch.equal(ours.labels, ref_labels)
        assert len(set(ref_labels[ref_labels < 5].tolist())) >= 2  # several of the boxes win somewhere


HEAD_SETTINGS = {
    'original': dict(),
    'imprv': dict(norm_on_bbox=True, centerness_on_reg=True, center_sampling=True,
                  loss_bbox=dict(type='GIoULoss', loss_weight=1.0)),
}
MMDET_TEST_CFG = dict(nms_pre=1000, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)


def head_pair(setting):
    kwargs = dict(HEAD_SETTINGS[setting], conv_bias=True, loss_bbox=HEAD_SETTINGS[setting].get(
        'loss_bbox', dict(type='IoULoss', loss_weight=1.0)))
    theirs = mmdet_head(test_cfg=ConfigDict(copy.deepcopy(MMDET_TEST_CFG)), **kwargs)
    ours = MODELS.build(dict(type='FCOSPointHead', num_classes=5, in_channels=16, feat_channels=16, strides=STRIDES,
                             norm_cfg=dict(type='GN', num_groups=4), **kwargs,
                             test_cfg=dict(MMDET_TEST_CFG, score_mode='product', nms_pre_by='cls')))
    torch.manual_seed(3)
    state = theirs.state_dict()
    for key, value in state.items():
        state[key] = torch.randn_like(value) * 0.3
    state['conv_cls.bias'] = torch.full_like(state['conv_cls.bias'], -1.0)  # enough candidates above 0.05
    theirs.load_state_dict(state)
    ours.load_state_dict(state, strict=True)  # same parameter names
    return theirs, ours


@pytest.mark.parametrize('setting', list(HEAD_SETTINGS))
def test_head_outputs_losses_and_detections_equal_mmdet(setting):
    theirs, ours = head_pair(setting)
    torch.manual_seed(4)
    feats = [torch.randn(4, 16, (h + 1) // 2, (w + 1) // 2) for h, w in SIZES]  # a 160 x 208 input
    gts = [InstanceData(bboxes=gt.bboxes / 2, labels=gt.labels) for gt in random_gts(5)]
    metas = [dict(img_shape=(IMG_H // 2 - 8 * i, IMG_W // 2 - 4 * i), batch_input_shape=(IMG_H // 2, IMG_W // 2),
                  scale_factor=(0.5, 0.5) if i % 2 else (1.0, 1.0)) for i in range(4)]
    theirs.train()
    ours.train()
    ref, out = theirs(feats), ours(feats)
    for ref_level, out_level in zip(ref, out):
        for a, b in zip(ref_level, out_level):
            assert torch.equal(a, b)
    ref_loss = theirs.loss_by_feat(*ref, gts, metas)
    out_loss = ours.loss_by_feat(*out, gts, metas)
    for key in ('loss_cls', 'loss_bbox', 'loss_centerness'):
        # mmdet decodes at the points (pixels), mmkp at the origin: same IoUs up to rounding
        assert torch.allclose(ref_loss[key], out_loss[key], rtol=1e-5), key

    theirs.eval()
    ours.eval()
    with torch.no_grad():
        ref, out = theirs(feats), ours(feats)
        for ref_level, out_level in zip(ref, out):
            for a, b in zip(ref_level, out_level):
                assert torch.equal(a, b)
        ref_det = theirs.predict_by_feat(*ref, batch_img_metas=metas, rescale=True)
        out_det = ours.predict_by_feat(*out, batch_img_metas=metas, rescale=True)
        sqrt_det = ours.predict_by_feat(*out, batch_img_metas=metas, rescale=True,
                                        cfg=dict(MMDET_TEST_CFG, score_mode='sqrt', nms_pre_by='cls'))
    for r, o, s in zip(ref_det, out_det, sqrt_det):
        assert len(r) > 10
        assert torch.equal(o.labels, r.labels)
        assert torch.equal(o.bboxes, r.bboxes)
        assert torch.allclose(o.scores, r.scores, rtol=1e-6, atol=0)
        # the original's score: the same detections (NMS order is kept by sqrt) scored sqrt(cls * ctr)
        assert torch.equal(s.bboxes, o.bboxes) and torch.allclose(s.scores, o.scores.sqrt(), rtol=1e-6)


def test_detector_predictions_equal_mmdet():
    """Whole detectors (ResNet-18 + FPN P3-P7) with the same weights on demo inputs through ``predict``."""
    from mmdet.testing import demo_mm_inputs
    model_cfg = dict(
        type='FCOS',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[102.9801, 115.9465, 122.7717], std=[1.0, 1.0, 1.0],
                               bgr_to_rgb=False, pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(1, 2, 3), style='caffe',
                      norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True),
        neck=dict(type='FPN', in_channels=[128, 256, 512], out_channels=32, start_level=0,
                  add_extra_convs='on_output', num_outs=5, relu_before_extra_convs=True),
        bbox_head=dict(type='FCOSHead', num_classes=5, in_channels=32, feat_channels=32, strides=STRIDES,
                       conv_bias=True, norm_cfg=dict(type='GN', num_groups=8)),
        test_cfg=ConfigDict(copy.deepcopy(MMDET_TEST_CFG)))
    with DefaultScope.overwrite_default_scope('mmdet'):
        theirs = MODELS.build(copy.deepcopy(model_cfg))
        model_cfg['bbox_head']['type'] = 'FCOSPointHead'
        model_cfg['test_cfg'] = dict(MMDET_TEST_CFG, score_mode='product', nms_pre_by='cls')
        ours = MODELS.build(model_cfg)
    torch.manual_seed(6)
    state = {k: (torch.randn_like(v) * 0.05 if v.is_floating_point() else v) for k, v in theirs.state_dict().items()}
    for key in state:
        if key.endswith('running_var'):
            state[key] = torch.rand_like(state[key]) + 0.5
    state['bbox_head.conv_cls.bias'].fill_(0.0)
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    theirs.eval()
    ours.eval()
    packed = demo_mm_inputs(2, [[3, 128, 160], [3, 96, 128]], num_classes=5)
    with torch.no_grad():
        data = theirs.data_preprocessor(packed, False)
        ref = theirs.predict(data['inputs'], copy.deepcopy(data['data_samples']))
        out = ours.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    for r, o in zip(ref, out):
        r, o = r.pred_instances, o.pred_instances
        assert len(r) > 0
        assert torch.equal(o.labels, r.labels) and torch.equal(o.bboxes, r.bboxes)
        assert torch.allclose(o.scores, r.scores, rtol=1e-6, atol=0)
