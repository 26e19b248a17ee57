"""CenterNetTTAModel: flip-averaged maps decoded once per scale, scales merged by per-class Gaussian soft-NMS
(xingyizhou/CenterNet@4c50fd3 ``src/lib/detectors/ctdet.py`` ``process`` and ``merge_outputs``), on hand-made maps."""
import math
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope

from mmkp.models.test_time_augs.center_tta import average_flip_maps
from mmkp.registry import MODELS

STRIDE = 4
BG = -12.0  # background logit: sigmoid 6e-6, below soft-NMS's discard score 0.001


def build(tta_cfg=None):
    register_all_modules(init_default_scope=False)
    detector = dict(
        type='CenterNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0., 0., 0.], std=[1., 1., 1.]),
        backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN'), init_cfg=None),
        neck=dict(type='CTResNetNeck', in_channels=512, num_deconv_filters=(8, 8, 8), num_deconv_kernels=(4, 4, 4),
                  use_dcn=False),
        bbox_head=dict(type='CenterHeatmapHead', num_classes=3, in_channels=8, feat_channels=8),
        test_cfg=dict(decoder=dict(type='CenterHeatmapDecoder', topk=100), max_per_img=100))
    cfg = dict(type='CenterNetTTAModel', module=detector)
    if tta_cfg is not None:
        cfg['tta_cfg'] = tta_cfg
    with DefaultScope.overwrite_default_scope('mmdet'):
        tta = MODELS.build(cfg)
    return tta.eval()


def sample(height, width, scale, flip, border):
    data_sample = DetDataSample()
    data_sample.set_metainfo(dict(
        img_shape=(height, width), ori_shape=(round((height - border[0] - border[1]) / scale),
                                              round((width - border[2] - border[3]) / scale)),
        scale_factor=(scale, scale), border=border, flip=flip, flip_direction='horizontal' if flip else None))
    return data_sample


def maps(height, width, peaks):
    """Hand-made maps: ``peaks`` = [(label, y, x, logit, (w, h), (dx, dy))], background logit ``BG``."""
    heat = torch.full((1, 3, height, width), BG)
    size = torch.zeros(1, 2, height, width)
    offset = torch.zeros(1, 2, height, width)
    for label, y, x, logit, wh, dxy in peaks:
        heat[0, label, y, x] = logit
        size[0, :, y, x] = torch.tensor(wh)
        offset[0, :, y, x] = torch.tensor(dxy)
    return [heat], [size], [offset]


def run(tta, views):
    """``views`` = [(DetDataSample, maps)]: the head's forward returns the maps of each view in turn."""
    outputs = iter([m for _, m in views])
    tta.module.extract_feat = lambda inputs: inputs
    tta.module.bbox_head.forward = lambda feats: next(outputs)
    data = dict(inputs=[[torch.zeros(3, *s.metainfo['img_shape'], dtype=torch.uint8)] for s, _ in views],
                data_samples=[[s] for s, _ in views])
    with torch.no_grad():
        return tta.test_step(data)[0].pred_instances


def test_average_flip_maps_is_the_written_out_formula():
    torch.manual_seed(0)
    heat, heat_f = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    size, size_f = torch.rand(2, 2, 4, 5) * 9, torch.rand(2, 2, 4, 5) * 9
    offset = torch.rand(2, 2, 4, 5)
    scores, wh, off = average_flip_maps(heat, size, offset, heat_f, size_f)
    width = heat.shape[-1]
    for x in range(width):  # flipped maps flipped back: column x of the image is column W - 1 - x of the mirror
        expect = (1 / (1 + torch.exp(-heat[..., x])) + 1 / (1 + torch.exp(-heat_f[..., width - 1 - x]))) / 2
        torch.testing.assert_close(scores[..., x], expect)
        torch.testing.assert_close(wh[..., x], (size[..., x] + size_f[..., width - 1 - x]) / 2)
    assert torch.equal(off, offset)
    scores_only, wh_only, _ = average_flip_maps(heat, size, offset)
    torch.testing.assert_close(scores_only, torch.sigmoid(heat))
    assert torch.equal(wh_only, size)
    with pytest.raises(ValueError, match='flip_size'):
        average_flip_maps(heat, size, offset, heat_f, None)


def test_flip_averages_score_and_size_and_takes_the_offset_of_the_unflipped_view():
    tta = build()
    height, width, border = 48, 64, (8, 8, 4, 4)  # maps 12 x 16
    hf, wf = height // STRIDE, width // STRIDE
    y, x = 3, 5
    orig = maps(hf, wf, [(1, y, x, 2.0, (4.0, 2.0), (0.25, 0.5))])
    flip = maps(hf, wf, [(1, y, wf - 1 - x, 0.0, (6.0, 4.0), (0.75, 0.1))])
    result = run(tta, [(sample(height, width, 1.0, False, border), orig),
                       (sample(height, width, 1.0, True, border), flip)])
    score = (1 / (1 + math.exp(-2.0)) + 0.5) / 2
    cx, cy, w, h = x + 0.25, y + 0.5, (4.0 + 6.0) / 2, (2.0 + 4.0) / 2
    box = [STRIDE * (cx - w / 2) - border[2], STRIDE * (cy - h / 2) - border[0],
           STRIDE * (cx + w / 2) - border[2], STRIDE * (cy + h / 2) - border[0]]
    assert len(result) == 100  # one scale: no NMS (merge_outputs without --nms), top 100 of the decoding
    assert result.labels[0].item() == 1
    torch.testing.assert_close(result.scores[0].item(), score, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.bboxes[0], torch.tensor(box), rtol=1e-5, atol=1e-4)
    assert result.scores[1].item() < 1e-4


def test_box_at_a_known_cell_maps_back_at_two_scales():
    tta = build()
    views = []
    expected = []
    for scale, (label, y, x, wh, dxy) in ((1.0, (0, 2, 3, (4.0, 6.0), (0.5, 0.25))),
                                          (0.5, (2, 6, 9, (2.0, 2.0), (0.0, 0.75)))):
        height, width, border = int(64 * scale) + 32, int(96 * scale) + 32, (16, 16, 16, 16)
        views.append((sample(height, width, scale, False, border),
                      maps(height // STRIDE, width // STRIDE, [(label, y, x, 3.0, wh, dxy)])))
        cx, cy = x + dxy[0], y + dxy[1]
        expected.append([(STRIDE * (cx - wh[0] / 2) - 16) / scale, (STRIDE * (cy - wh[1] / 2) - 16) / scale,
                         (STRIDE * (cx + wh[0] / 2) - 16) / scale, (STRIDE * (cy + wh[1] / 2) - 16) / scale])
    result = run(tta, views)
    # two scales: soft-NMS drops the background (scores < 0.001); the two boxes do not overlap
    assert len(result) == 2
    order = torch.argsort(result.labels)
    assert result.labels[order].tolist() == [0, 2]
    torch.testing.assert_close(result.bboxes[order], torch.tensor(expected), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(result.scores, torch.full((2, ), 1 / (1 + math.exp(-3.0))), rtol=1e-5, atol=1e-6)


def test_soft_nms_merges_duplicates_across_scales_but_not_within_one_scale():
    tta = build()
    # the same object (original box (0, 0, 32, 16)) found at scale 1 and scale 0.5
    s1 = sample(32, 64, 1.0, False, (0, 0, 0, 0))
    s2 = sample(16, 32, 0.5, False, (0, 0, 0, 0))
    hi, lo = 0.9, 0.8
    m1 = maps(8, 16, [(1, 2, 4, math.log(hi / (1 - hi)), (8.0, 4.0), (0.0, 0.0))])
    m2 = maps(4, 8, [(1, 1, 2, math.log(lo / (1 - lo)), (4.0, 2.0), (0.0, 0.0))])
    result = run(tta, [(s1, m1), (s2, m2)])
    box = torch.tensor([0.0, 0.0, 32.0, 16.0])
    assert len(result) == 2
    torch.testing.assert_close(result.bboxes, box.expand(2, 4), rtol=1e-5, atol=1e-4)
    # Gaussian soft-NMS (sigma 0.5): identical boxes, IoU 1 -> weight exp(-1 / 0.5)
    torch.testing.assert_close(result.scores, torch.tensor([hi, lo * math.exp(-2.0)]), rtol=1e-5, atol=1e-6)
    # same detections at one scale: no NMS, both scores unchanged
    tta = build()
    m1 = maps(8, 16, [(1, 2, 4, math.log(hi / (1 - hi)), (8.0, 4.0), (0.0, 0.0)),
                      (1, 2, 6, math.log(lo / (1 - lo)), (8.0, 4.0), (-2.0, 0.0))])
    result = run(tta, [(sample(32, 64, 1.0, False, (0, 0, 0, 0)), m1)])
    torch.testing.assert_close(result.scores[:2], torch.tensor([hi, lo]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.bboxes[:2], box.expand(2, 4), rtol=1e-5, atol=1e-4)
    # the original's --nms: the same soft-NMS at one scale
    tta = build(dict(nms_single_scale=True))
    result = run(tta, [(sample(32, 64, 1.0, False, (0, 0, 0, 0)), m1)])
    assert len(result) == 2
    torch.testing.assert_close(result.scores, torch.tensor([hi, lo * math.exp(-2.0)]), rtol=1e-5, atol=1e-6)


def test_views_that_cannot_be_paired_are_errors():
    tta = build()
    flip_only = maps(12, 16, [(0, 1, 1, 1.0, (1.0, 1.0), (0.0, 0.0))])
    with pytest.raises(ValueError, match='no unflipped view'):
        run(tta, [(sample(48, 64, 1.0, True, (0, 0, 0, 0)), flip_only)])


def _real_tta(tta_cfg=None):
    """A small untrained CenterNet (ResNet-18, 8-channel neck) wrapped in the TTA model; weights seeded."""
    torch.manual_seed(0)
    tta = build(tta_cfg)
    tta.module.init_weights()
    return tta


def _config_pipeline(bccd_root, scales=None, flips=(1.0, 0.0)):
    cfg = Config.fromfile(osp.join(osp.dirname(__file__), '..', '..', '..', 'configs', 'centernet',
                                   'centernet_r18-dcnv2_6xb19-crop512-140e_coco_ms-tta.py'))
    tta_pipeline = cfg.tta_pipeline
    if scales is not None:
        tta_pipeline[1].transforms[0] = [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in scales]
    tta_pipeline[1].transforms[1] = [dict(type='RandomFlip', prob=p) for p in flips]
    register_all_modules(init_default_scope=False)
    img = osp.join(bccd_root, 'images', 'BloodImage_00001.jpg')
    with DefaultScope.overwrite_default_scope('mmdet'):
        tta_data = pseudo_collate([Compose(tta_pipeline)(dict(img_path=img, img_id=0))])
        plain_data = pseudo_collate([Compose(cfg.test_pipeline)(dict(img_path=img, img_id=0))])
    return tta_data, plain_data


def test_one_unflipped_view_equals_the_plain_prediction(bccd_root):
    tta = _real_tta()
    tta_data, plain_data = _config_pipeline(bccd_root, scales=(1.0, ), flips=(0.0, ))
    with torch.no_grad():
        ours = tta.test_step(tta_data)[0].pred_instances
        plain = tta.module.test_step(plain_data)[0].pred_instances
    assert len(ours) == len(plain) == 100
    torch.testing.assert_close(ours.scores, plain.scores, rtol=1e-4, atol=1e-6)
    assert torch.equal(ours.labels, plain.labels)
    torch.testing.assert_close(ours.bboxes, plain.bboxes, rtol=1e-4, atol=1e-3)


def test_config_multiscale_flip_pipeline_runs_ten_views(bccd_root):
    tta = _real_tta()
    tta_data, _ = _config_pipeline(bccd_root)
    assert len(tta_data['inputs']) == 10
    calls = []
    extract = tta.module.extract_feat
    tta.module.extract_feat = lambda inputs: calls.append(tuple(inputs.shape[-2:])) or extract(inputs)
    with torch.no_grad():
        result = tta.test_step(tta_data)[0].pred_instances
    assert len(calls) == 10 and len(set(calls)) == 5  # 5 scales x (flip, no flip), flip pairs share a shape
    assert 0 < len(result) <= 100
    assert torch.isfinite(result.bboxes).all() and (result.scores > 0.001).all()
    assert bool((result.scores[:-1] >= result.scores[1:]).all())
