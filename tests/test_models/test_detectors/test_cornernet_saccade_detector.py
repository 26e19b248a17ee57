"""CornerNet-Saccade's test procedure (princeton-vl/CornerNet-Lite@6a54505 ``core/test/cornernet_saccade.py``)."""
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmkp.models.detectors import CornerNetSaccade, crop_to_original, location_nms, reference_locations
from mmkp.ops import saccade_crop
from mmkp.registry import MODELS


@pytest.mark.parametrize('zoom, center, box, expect', [
    # zoom 1: side 255, window from (300 - 127, 400 - 127); crop pixels = original pixels shifted
    (1.0, (300., 400.), (10., 20., 100., 200.), (283., 193., 373., 373.)),
    # zoom 2: side floor(255 / 2) = 127, window from (300 - 63, 400 - 63) = (237, 337), scale 255 / 127
    (2.0, (300., 400.), (51., 102., 255., 204.), (337 + 51 * 127 / 255, 237 + 102 * 127 / 255, 337 + 127.,
                                                   237 + 204 * 127 / 255)),
    # zoom 4: side 63, window from (300 - 31, 400 - 31) = (269, 369), scale 255 / 63
    (4.0, (300.7, 400.2), (0., 0., 255., 127.5), (369., 269., 369 + 63., 269 + 31.5)),
    # next to the image border: window from (10 - 127, 5 - 127) = (-117, -122)
    (1.0, (10., 5.), (130., 120., 200., 250.), (8., 3., 78., 133.)),
])
def test_box_in_a_crop_maps_back_to_the_right_original_pixels(zoom, center, box, expect):
    image = torch.zeros(1, 3, 600, 800)
    _, transforms = saccade_crop(image, torch.tensor([center]), torch.tensor([zoom]), 255)
    got = crop_to_original(torch.tensor([box]), transforms[0])
    torch.testing.assert_close(got, torch.tensor([expect]), rtol=0, atol=1e-4)


def test_mapped_box_covers_the_same_image_content():
    # a bright rectangle in the image; its box found in a zoom-2 crop maps back onto the rectangle
    image = torch.zeros(1, 1, 300, 400)
    image[:, :, 120:160, 200:260] = 1.0
    crops, transforms = saccade_crop(image, torch.tensor([[140., 230.]]), torch.tensor([2.0]), 255)
    ys, xs = (crops[0, 0] > 0.5).nonzero(as_tuple=True)
    box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
    got = crop_to_original(box, transforms[0])
    torch.testing.assert_close(got, torch.tensor([[200., 120., 260., 160.]]), rtol=0, atol=1.0)


def test_location_suppression_keeps_and_drops_the_right_locations():
    locs = torch.tensor([
        [100., 100., 1.0, 0.9],  # A: kept
        [110., 300., 1.1, 0.8],  # B: min(|dy| 10, |dx| 200) = 10 <= 16 and ratio 1 / 1.1 in [0.8, 1.2] -> dropped
        [105., 105., 2.0, 0.7],  # C: near A but zoom ratio 0.5 -> kept
        [200., 200., 1.0, 0.6],  # D: far from A (min distance 100) -> kept
        [210., 190., 1.0, 0.5],  # E: 10 from D -> dropped
        [100., 120., 1.0, 0.4],  # F: dy 0 to A -> dropped (16 / 1)
        [105., 112., 2.0, 0.3],  # G: vs C (kept, zoom 2): min(0, 7) <= 16 / 2 and ratio 1 -> dropped
    ])
    kept = location_nms(locs)
    torch.testing.assert_close(kept, locs[[0, 2, 3]])
    # the threshold is divided by the kept zoom: at zoom 2, 9 pixels apart survive
    pair = torch.tensor([[0., 0., 2.0, 0.9], [9., 9., 2.0, 0.8]])
    assert len(location_nms(pair)) == 2


def test_reference_locations_by_size():
    boxes = torch.tensor([[0., 0., 100., 50.], [10., 10., 60., 30.], [0., 0., 20., 10.], [0., 0., 300., 300.],
                          [0., 0., 50., 50.]])
    scores = torch.tensor([0.9, 0.6, 0.51, 0.7, 0.5])  # the last is not > 0.5
    locs = reference_locations(boxes, scores, 0.5, (96, 32), (192, 64, 24))
    expect = torch.tensor([[25., 50., 1.92, 1.], [20., 35., 64 / 50, 1.], [5., 10., 24 / 20, 1.],
                           [150., 150., 192 / 300, 1.]])
    torch.testing.assert_close(locs, expect)


def _tiny_detector(**saccade):
    cfg = dict(init_sizes=(192, 255), att_threshold=0.05, coarse_threshold=-0.5, k_max=4, crop_batch=3)
    cfg.update(saccade)
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = _build(cfg)
    model.init_weights()
    # spread the untrained scores (the default init gives near-equal ones, whose order ties would decide)
    with torch.no_grad():
        for heat in list(model.bbox_head.tl_heats) + list(model.bbox_head.br_heats):
            heat[-1].weight.normal_(0, 2.0)
    return model.eval()


def _build(cfg):
    return MODELS.build(dict(
        type='CornerNetSaccade',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[100., 110., 120.], std=[70., 70., 70.],
                               bgr_to_rgb=False),
        backbone=dict(type='Hourglass54', num_stacks=2, stage_channels=(8, 8, 8, 8), feat_channel=8),
        bbox_head=dict(type='SaccadeHead', num_classes=1, in_channels=8, num_stacks=2, pool_channels=4,
                       feat_channels=4, attention_channels=(8, 8, 8), attention_feat_channels=4),
        test_cfg=dict(
            decoder=dict(type='CornerPairDecoder', topk=40, ae_threshold=10.0, num_dets=40, reject_border=False),
            nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.7, min_score=0.001, method='gaussian', offset=1),
            max_per_img=1000, saccade=cfg)))


def test_batch_equals_one_image_at_a_time():
    torch.manual_seed(0)
    model = _tiny_detector()
    images = [torch.rand(3, 200, 300) * 255, torch.rand(3, 260, 180) * 255]
    samples = [DetDataSample(metainfo=dict(img_shape=tuple(im.shape[1:]), ori_shape=tuple(im.shape[1:]),
                                           scale_factor=(1., 1.))) for im in images]
    with torch.no_grad():
        batch = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
        together = model.saccade_predict(batch['inputs'], [s.metainfo for s in batch['data_samples']])
        alone = []
        for im, s in zip(images, samples):
            one = model.data_preprocessor(dict(inputs=[im], data_samples=[s]), False)
            alone += model.saccade_predict(one['inputs'], [one['data_samples'][0].metainfo])
    for a, b in zip(together, alone):
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.bboxes, b.bboxes, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        assert torch.equal(a.labels, b.labels)


def test_crops_cover_the_locations_and_k_max(monkeypatch):
    torch.manual_seed(0)
    model = _tiny_detector(k_max=3)
    seen = []
    original = model._run_crops

    def spy(crops, with_attention):
        seen.append((len(crops), with_attention))
        return original(crops, with_attention)

    monkeypatch.setattr(model, '_run_crops', spy)
    images = [torch.rand(3, 200, 300) * 255]
    samples = [DetDataSample(metainfo=dict(img_shape=(200, 300), ori_shape=(200, 300), scale_factor=(1., 1.)))]
    with torch.no_grad():
        batch = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
        out = model.predict(batch['inputs'], batch['data_samples'])
    assert seen[0] == (2, True)  # the two downsized views, with attention
    assert seen[1][1] is False and 0 < seen[1][0] <= 3  # at most k_max zoomed crops, without attention
    assert isinstance(out[0].pred_instances, InstanceData)


def test_unknown_saccade_key_is_refused():
    with pytest.raises(ValueError, match='unknown keys'):
        _tiny_detector(att_thresholds=[0.3])
    assert isinstance(_tiny_detector(), CornerNetSaccade)
