"""CornerNetTTAModel: the raw pairs of every view are un-flipped, pooled and soft-NMS'ed once (the original's test,
princeton-vl/CornerNet-Lite@6a54505 ``core/test/cornernet.py::cornernet_inference``), through the head's hooks."""
import copy
import math
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_flip
from mmdet.utils import register_all_modules
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmkp.models.utils import corner_nms
from mmkp.registry import MODELS

NMS = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1)
PAD = dict(type='RandomCenterCropPad', crop_size=None, ratios=None, border=None, test_mode=True,
           test_pad_mode=['logical_or', 127], mean=[0, 0, 0], std=[1, 1, 1], to_rgb=False)


def build(nms):
    register_all_modules(init_default_scope=False)
    detector = dict(
        type='CornerNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[104., 114., 120.], std=[73., 70., 71.]),
        backbone=dict(type='HourglassNet', downsample_times=2, num_stacks=2, stage_channels=(16, 16, 24),
                      stage_blocks=(1, 1, 1), feat_channel=16),
        neck=None,
        bbox_head=dict(type='CornerPoolHead', num_classes=2, in_channels=16, pool_channels=8, feat_channels=16),
        test_cfg=dict(decoder=dict(type='CornerPairDecoder', topk=30, num_dets=300, ae_threshold=1e3), nms=NMS,
                      max_per_img=50))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        tta = MODELS.build(dict(type='CornerNetTTAModel', module=detector, tta_cfg=dict(nms=nms, max_per_img=50)))
    tta.module.init_weights()
    head = tta.module.bbox_head
    forward_single = head.forward_single

    def biased(x, stack):
        # an untrained head puts its corners anywhere; ramps favour top-left / bottom-right corners so that pairs
        # exist, while the network's outputs (which depend on the image, hence on the flip) still decide them
        out = forward_single(x, stack)
        height, width = out['top_left']['heatmap'].shape[-2:]
        ramp = torch.arange(height).view(-1, 1) / height + torch.arange(width).view(1, -1) / width
        out['top_left']['heatmap'] = out['top_left']['heatmap'] - 4 * ramp
        out['bottom_right']['heatmap'] = out['bottom_right']['heatmap'] + 4 * ramp - 4
        return out

    head.forward_single = biased
    return tta.eval()


def tta_batch(bccd_root, scales=(1.0, )):
    img = osp.join(bccd_root, 'images', 'BloodImage_00001.jpg')
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        pipeline = _pipeline(scales)
    return pseudo_collate([pipeline(dict(img_path=img, img_id=0))])


def _pipeline(scales):
    return Compose([
        dict(type='LoadImageFromFile', to_float32=True),
        dict(type='TestTimeAug', transforms=[
            [dict(type='Resize', scale_factor=0.2 * s, keep_ratio=True) for s in scales],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [PAD],
            [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                                   'flip', 'flip_direction', 'border'))]])
    ])


@pytest.mark.parametrize('merge', [False, True])
def test_views_pooled_then_one_soft_nms(bccd_root, merge):
    nms = dict(NMS, type='soft_nms_merge', weight_exp=10) if merge else NMS
    tta = build(nms)
    data = tta_batch(bccd_root, scales=(1.0, 1.5) if merge else (1.0, ))
    with torch.no_grad():
        merged = tta.test_step(copy.deepcopy(data))[0].pred_instances
        # by hand: raw pairs of each view (no NMS), back to the original image, pooled, one soft-NMS
        pooled = []
        for v in range(len(data['inputs'])):
            view = tta.module.data_preprocessor({k: val[v] for k, val in data.items()}, False)
            meta = view['data_samples'][0].metainfo
            raw = tta.module.bbox_head.predict(tta.module.extract_feat(view['inputs']), view['data_samples'],
                                               rescale=True, with_nms=False)[0]
            assert {'tl_scores', 'br_scores'} <= set(raw.keys()) and len(raw) > 0
            if meta['flip']:
                raw.bboxes = bbox_flip(raw.bboxes, meta['ori_shape'], meta['flip_direction'])
            assert (raw.bboxes[:, 0::2] <= meta['ori_shape'][1]).all()
            pooled.append(raw)
        expected = corner_nms(InstanceData.cat(pooled), nms, 50)
    assert len(merged) == len(expected) > 0
    assert torch.equal(merged.scores, expected.scores) and torch.equal(merged.labels, expected.labels)
    assert torch.allclose(merged.bboxes, expected.bboxes)


IMG_H, IMG_W = 64, 100
#: the object of the hand-made maps, in pixels of the (unflipped) image: top-left (13, 10), bottom-right (62, 43)
BOX = (13.0, 10.0, 62.0, 43.0)


def handmade_maps(x):
    """Maps of known geometry, (IMG_H / 4, IMG_W / 4) cells: one top-left and one bottom-right peak of class 1 with
    offsets, placed for the unflipped image (its right half is bright) or for the flipped one (left half bright),
    where the object sits at x' = W - x. Top-left logits 3 (unflipped) / 2 (flipped), bottom-right 2.5 / 1.5."""
    batch, _, height, width = x.shape
    flipped = bool(x[..., :width // 2].mean() > x[..., width // 2:].mean())
    x1, y1, x2, y2 = BOX
    if flipped:
        x1, x2 = IMG_W - x2, IMG_W - x1
    out = {}
    for name, (px, py), logit in (('top_left', (x1, y1), 2.0 if flipped else 3.0),
                                  ('bottom_right', (x2, y2), 1.5 if flipped else 2.5)):
        cx, cy = px / 4, py / 4
        heat = torch.full((batch, 2, height, width), -10.0)
        heat[:, 1, int(cy), int(cx)] = logit
        off = torch.zeros(batch, 2, height, width)
        off[:, 0, int(cy), int(cx)] = cx - int(cx)
        off[:, 1, int(cy), int(cx)] = cy - int(cy)
        out[name] = dict(heatmap=heat, embedding=torch.zeros(batch, 1, height, width), offset=off)
    return out


def handmade_tta(tmp_path, nms):
    tta = build(nms)
    tta.module.bbox_head.decoder.topk = 1
    tta.module.extract_feat = lambda inputs: [F.avg_pool2d(inputs, 4)] * 2
    tta.module.bbox_head.forward_single = lambda x, stack: handmade_maps(x)
    img = np.zeros((IMG_H, IMG_W, 3), np.uint8)
    img[:, IMG_W // 2:] = 255
    path = str(tmp_path / 'half.png')
    mmcv.imwrite(img, path)
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        pipeline = Compose([
            dict(type='LoadImageFromFile'),
            dict(type='TestTimeAug', transforms=[
                [dict(type='RandomFlip', prob=0.), dict(type='RandomFlip', prob=1.)],
                [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                                       'scale_factor', 'flip', 'flip_direction'))]])
        ])
    return tta, pseudo_collate([pipeline(dict(img_path=path, img_id=0))])


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_flipped_view_maps_back_onto_the_known_box(tmp_path):
    """Hand-made maps: the unflipped view finds BOX directly, the flipped view finds its mirror image; both land on
    BOX (computed by hand, not by the model's own flip) with the right scores and corner scores."""
    tta, data = handmade_tta(tmp_path, None)  # no NMS: every raw pair of the views
    with torch.no_grad():
        merged = tta.test_step(copy.deepcopy(data))[0].pred_instances
    assert len(merged) == 2
    assert torch.allclose(merged.bboxes, torch.tensor([BOX, BOX]), atol=1e-4)
    assert merged.labels.tolist() == [1, 1]
    assert merged.scores.tolist() == pytest.approx([(sigmoid(3) + sigmoid(2.5)) / 2, (sigmoid(2) + sigmoid(1.5)) / 2])


def test_one_soft_nms_over_the_pooled_views(tmp_path):
    tta, data = handmade_tta(tmp_path, NMS)
    with torch.no_grad():
        merged = tta.test_step(copy.deepcopy(data))[0].pred_instances
    # the two views' boxes coincide (IoU 1): the second is decayed by exp(-IoU^2 / sigma) = exp(-2)
    first, second = (sigmoid(3) + sigmoid(2.5)) / 2, (sigmoid(2) + sigmoid(1.5)) / 2
    assert merged.scores.tolist() == pytest.approx([first, second * math.exp(-1 / 0.5)], rel=1e-5)
    assert torch.allclose(merged.bboxes, torch.tensor([BOX, BOX]), atol=1e-4)


def test_the_heads_merge_hook_runs_between_pooling_and_nms(tmp_path):
    tta, data = handmade_tta(tmp_path, NMS)
    head = tta.module.bbox_head
    calls = []

    def merge(results, metas):  # e.g. the triplet center-region check: drop the flipped view's box
        calls.append(([len(r) for r in results], [m['flip'] for m in metas]))
        pooled = type(head).merge_view_detections(head, results, metas)
        # the extra fields of the views reach the merge, un-flipped boxes included
        assert pooled.tl_scores.tolist() == pytest.approx([sigmoid(3), sigmoid(2)])
        assert pooled.br_scores.tolist() == pytest.approx([sigmoid(2.5), sigmoid(1.5)])
        assert torch.allclose(pooled.bboxes, torch.tensor([BOX, BOX]), atol=1e-4)
        return pooled[pooled.scores > 0.85]

    head.merge_view_detections = merge
    with torch.no_grad():
        merged = tta.test_step(copy.deepcopy(data))[0].pred_instances
    assert calls == [([1, 1], [False, True])]
    assert len(merged) == 1 and merged.scores.item() == pytest.approx((sigmoid(3) + sigmoid(2.5)) / 2)


def test_needs_a_head_that_returns_raw_pairs():
    tta = build(NMS)
    tta.module.bbox_head.predict = lambda x, samples, rescale=False: None
    with pytest.raises(TypeError, match='with_nms'):
        tta.test_step(dict(inputs=[[torch.zeros(3, 8, 8)]], data_samples=[[None]]))
    tta = build(NMS)
    tta.module.bbox_head.merge_view_detections = None
    with pytest.raises(TypeError, match='merge_view_detections'):
        tta.test_step(dict(inputs=[[torch.zeros(3, 8, 8)]], data_samples=[[None]]))
