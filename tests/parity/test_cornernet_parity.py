"""mmkp's CornerNet against mmdet 3.3.0's CornerNet with identical weights: head outputs, losses, decoded boxes.

mmdet's config ``mmdet::cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py`` is shrunk identically for both
models (Hourglass of depth 2 with 16 / 24 channels, 16-channel stack features, 2 classes; the head keeps mmdet's fixed
128 corner-pool and 256 prediction channels). mmkp is configured with mmdet's choices where they differ from the
original (docs of CornerPoolHead / AssociativeEmbeddingPullPushLoss / CornerPairDecoder):

* targets: ``GaussianHeatmapAssigner(clip_to=None)`` (mmdet does not clip boxes; same corrected radius with 0.3);
* heatmap loss: ``HeatmapFocalLoss(clamp_eps=0)`` (mmdet's GaussianFocalLoss has no probability clamp), and
  ``corner_reduction='mean'`` (mmdet averages TL and BR), ``stack_reduction='sum'`` (mmengine sums mmdet's
  per-level loss lists), ``offset_norm='clamped'`` (mmdet: max(1, #corners));
* embedding loss: ``eps=0, push_diagonal='exclude'`` (mmdet divides by N and N (N - 1) exactly);
* decoding: ``keep_zero_size=False`` (mmdet rejects br <= tl), no clipping, mmdet's soft-NMS config (offset 0).
"""
import copy

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import KeypointMaps
from mmkp.registry import MODELS

BACKBONE = dict(downsample_times=2, stage_channels=[16, 16, 24], stage_blocks=[1, 1, 1], feat_channel=16)
MMDET_TEST_CFG = dict(
    corner_topk=40,
    local_maximum_kernel=3,
    distance_threshold=0.5,
    score_thr=0.05,
    max_per_img=100,
    nms=dict(type='soft_nms', iou_threshold=0.5, method='gaussian'))
MMKP_HEAD = dict(
    type='CornerPoolHead',
    num_classes=2,
    in_channels=16,
    num_stacks=2,
    pool_channels=128,
    feat_channels=256,
    pred_kernel_size=3,
    loss_heatmap=dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=0.0),
    loss_embedding=dict(
        type='AssociativeEmbeddingPullPushLoss', pull_weight=0.1, push_weight=0.1, eps=0.0,
        push_diagonal='exclude'),
    loss_offset=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
    corner_reduction='mean',
    stack_reduction='sum',
    offset_norm='clamped',
    train_cfg=dict(assigner=dict(type='GaussianHeatmapAssigner', keypoints=('top_left', 'bottom_right'),
                                 radius_formula='corrected', min_overlap=0.3, clip_to=None)),
    test_cfg=dict(
        decoder=dict(type='CornerPairDecoder', topk=40, ae_threshold=0.5, num_dets=1000, keep_zero_size=False,
                     clip_border=False),
        nms=dict(type='soft_nms', iou_threshold=0.5, method='gaussian'),
        max_per_img=100))


def mmdet_to_mmkp_key(key):
    """mmdet ``CornerHead`` / ``BiCornerPool`` names -> mmkp ``CornerPoolHead`` / ``CornerPoolModule`` names."""
    parts = key.split('.')
    if parts[0] != 'bbox_head':
        return key
    corner, branch = parts[1].split('_')
    if branch == 'pool':
        rename = dict(direction1_conv='p1_conv1', direction2_conv='p2_conv1', aftpool_conv='p_conv1')
        parts[1] = f'{corner}_modules'
        parts[3] = rename.get(parts[3], parts[3])
        return '.'.join(parts)
    parts[1] = f'{corner}_' + dict(heat='heats', emb='tags', off='offs')[branch]
    if parts[3] == '1':  # the last 1x1 conv: ConvModule(..., act_cfg=None).conv -> nn.Conv2d
        del parts[4]
    return '.'.join(parts)


def build_models():
    """mmdet's CornerNet and mmkp's, shrunk alike, with mmdet's (randomised) weights copied into mmkp's."""
    register_all_modules(init_default_scope=False)
    cfg = get_config('mmdet::cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py')
    mmdet_cfg = copy.deepcopy(cfg.model)
    mmdet_cfg.backbone.update(BACKBONE)
    mmdet_cfg.bbox_head.in_channels = 16
    mmdet_cfg.bbox_head.num_classes = 2  # few classes: random-weight corners then pair into boxes
    mmdet_cfg.test_cfg = MMDET_TEST_CFG
    mmkp_cfg = copy.deepcopy(cfg.model)
    mmkp_cfg.backbone.update(BACKBONE)
    head = copy.deepcopy(MMKP_HEAD)
    mmkp_cfg.train_cfg = head.pop('train_cfg')
    mmkp_cfg.test_cfg = head.pop('test_cfg')
    mmkp_cfg.bbox_head = head
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MODELS.build(mmdet_cfg)
        ours = MODELS.build(mmkp_cfg)
    ref.init_weights()
    with torch.no_grad():  # non-trivial BN statistics, so that eval mode is checked too
        for name, buf in ref.named_buffers():
            if name.endswith('running_mean'):
                buf.normal_(0, 0.1)
            elif name.endswith('running_var'):
                buf.uniform_(0.5, 1.5)
    state = {mmdet_to_mmkp_key(k): v for k, v in ref.state_dict().items()}
    ours_keys = set(ours.state_dict())
    assert set(state) == ours_keys, (sorted(set(state) - ours_keys)[:5], sorted(ours_keys - set(state))[:5])
    ours.load_state_dict(state, strict=True)
    return ref, ours


@pytest.fixture(scope='module')
def models():
    return build_models()


def batch(num=2, size=127):
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(num, 3, size, size, generator=g)
    boxes = [
        torch.tensor([[3.5, 5.0, 60.0, 41.0], [20.2, 58.1, 90.0, 120.3], [70.0, 10.0, 122.0, 70.7]]),
        torch.tensor([[10.0, 12.0, 40.0, 44.0], [50.5, 30.0, 110.0, 100.0]]),
    ]
    labels = [torch.tensor([0, 1, 1]), torch.tensor([1, 1])]
    samples = []
    for i in range(num):
        s = DetDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size), batch_input_shape=(size, size), pad_shape=(size, size)))
        s.gt_instances = InstanceData(bboxes=boxes[i], labels=labels[i])
        samples.append(s)
    return inputs, samples


@pytest.mark.parametrize('train', [True, False])
def test_head_outputs_match(models, train):
    ref, ours = models
    ref.train(train)
    ours.train(train)
    inputs, _ = batch()
    with torch.no_grad():
        ref_out = ref._forward(inputs)
        our_out = ours._forward(inputs).to_tuple()  # KeypointMaps in mmdet CornerHead's order
    # both: (tl_heats, br_heats, tl_embs / tl_tags, br_embs / br_tags, tl_offs, br_offs), lists over the 2 stacks
    max_diff = max((a - b).abs().max().item() for ra, oa in zip(ref_out, our_out) for a, b in zip(ra, oa))
    assert max_diff <= 1e-5, max_diff


def test_losses_match(models):
    ref, ours = models
    ref.train()
    ours.train()
    inputs, samples = batch()
    ref_losses = ref.loss(inputs, samples)
    our_losses = ours.loss(inputs, samples)
    pairs = dict(det_loss='loss_heatmap', pull_loss='loss_pull', push_loss='loss_push', off_loss='loss_offset')
    for mmdet_key, mmkp_key in pairs.items():
        expected = sum(ref_losses[mmdet_key])  # mmengine sums the per-level lists
        assert our_losses[mmkp_key].item() == pytest.approx(expected.item(), rel=2e-5, abs=1e-7), mmkp_key
    # and the gradients agree
    sum(sum(v) for v in ref_losses.values()).backward()
    sum(our_losses.values()).backward()
    ref_grads = {mmdet_to_mmkp_key(k): p.grad for k, p in ref.named_parameters()}
    for k, p in ours.named_parameters():
        assert torch.allclose(p.grad, ref_grads[k], rtol=1e-3, atol=1e-5), k


def synthetic_maps(batch=2, classes=4, h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, classes, h, w, generator=g) * 2 - 3,
        torch.randn(batch, classes, h, w, generator=g) * 2 - 3,
        torch.randn(batch, 1, h, w, generator=g) * 0.4,
        torch.randn(batch, 1, h, w, generator=g) * 0.4,
        torch.rand(batch, 2, h, w, generator=g),
        torch.rand(batch, 2, h, w, generator=g),
    ]


def test_decoded_boxes_match(models):
    ref, ours = models
    maps = synthetic_maps()
    metas = [
        dict(batch_input_shape=(127, 159), img_shape=(127, 159), ori_shape=(254, 318), scale_factor=(0.5, 0.5)),
        dict(batch_input_shape=(127, 159), img_shape=(127, 159), ori_shape=(127, 159), scale_factor=(1.0, 1.0)),
    ]
    ref_results = ref.bbox_head.predict_by_feat(*[[m] for m in maps], batch_img_metas=metas, rescale=True)
    our_results = ours.bbox_head.predict_by_feat(KeypointMaps.from_tuple([[m] for m in maps]), batch_img_metas=metas,
                                                 rescale=True)
    for r, o in zip(ref_results, our_results):
        assert len(r) == len(o) > 20
        assert torch.allclose(o.bboxes, r.bboxes, atol=1e-4)
        assert torch.equal(o.scores, r.scores) and torch.equal(o.labels, r.labels)


def test_full_model_predictions_match(models):
    ref, ours = models
    ref.eval()
    ours.eval()
    inputs, samples = batch()
    with torch.no_grad():
        ref_pred = ref.predict(inputs, copy.deepcopy(samples), rescale=True)
        our_pred = ours.predict(inputs, copy.deepcopy(samples), rescale=True)
    for r, o in zip(ref_pred, our_pred):
        r, o = r.pred_instances, o.pred_instances
        assert len(r) == len(o) > 0
        # mmdet clamps coordinates below 0 only; mmkp is configured without clipping: compare after mmdet's clamp
        assert torch.allclose(o.bboxes.clamp(min=0), r.bboxes, atol=1e-4)
        assert torch.allclose(o.scores, r.scores, atol=1e-6) and torch.equal(o.labels, r.labels)
