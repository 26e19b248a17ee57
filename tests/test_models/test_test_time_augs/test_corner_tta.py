"""CornerNetTTAModel: the raw pairs of every view are un-flipped, pooled and soft-NMS'ed once (the original's test)."""
import copy
import os.path as osp

import pytest
import torch
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
        tl, br, tl_tag, br_tag, tl_off, br_off = forward_single(x, stack)
        height, width = tl.shape[-2:]
        ramp = torch.arange(height).view(-1, 1) / height + torch.arange(width).view(1, -1) / width
        return tl - 4 * ramp, br + 4 * ramp - 4, tl_tag, br_tag, tl_off, br_off

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


def test_flip_maps_boxes_back(bccd_root):
    """A flipped view's raw boxes, un-flipped, equal those of the unflipped view run on the flipped image."""
    tta = build(NMS)
    data = tta_batch(bccd_root)
    flipped = [i for i in range(2) if data['data_samples'][i][0].metainfo['flip']][0]
    view = tta.module.data_preprocessor({k: val[flipped] for k, val in data.items()}, False)
    with torch.no_grad():
        raw = tta.module.bbox_head.predict(tta.module.extract_feat(view['inputs']), view['data_samples'],
                                           rescale=True, with_nms=False)[0]
        result = tta.test_step(copy.deepcopy(data))[0].pred_instances
    meta = view['data_samples'][0].metainfo
    unflipped = bbox_flip(raw.bboxes, meta['ori_shape'], 'horizontal')
    # every merged detection comes from one of the views; those of the flipped view appear un-flipped
    from_flipped = (torch.cdist(result.bboxes, unflipped).min(1)[0] < 1e-4).sum()
    assert from_flipped > 0


def test_needs_a_head_that_returns_raw_pairs():
    tta = build(NMS)
    tta.module.bbox_head.predict = lambda x, samples, rescale=False: None
    with pytest.raises(TypeError, match='with_nms'):
        tta.test_step(dict(inputs=[[torch.zeros(3, 8, 8)]], data_samples=[[None]]))
