"""FCOSPointHead: layers and options, the original's losses written out, the original's inference by hand."""
import json
import math
import os.path as osp
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import original_fcos_key_map
from mmkp.registry import MODELS
from tests.conftest import REPO

STRIDES = (8, 16)
RANGES = ((-1, 48), (48, 1e8))
ORIGINAL_CKPTS = osp.join(REPO, '..', 'shared', 'reference', 'original_checkpoints')


def make_head(**kwargs):
    cfg = dict(type='FCOSPointHead', num_classes=3, in_channels=16, feat_channels=16, strides=STRIDES,
               regress_ranges=RANGES, norm_cfg=dict(type='GN', num_groups=4))
    cfg.update(kwargs)
    torch.manual_seed(0)
    head = MODELS.build(cfg)
    for p in head.parameters():  # random, non-degenerate weights
        torch.nn.init.normal_(p, std=0.1)
    return head


def feats(batch=2):
    torch.manual_seed(1)
    return [torch.randn(batch, 16, 64 // s, 64 // s) for s in STRIDES]


def gts():
    return [InstanceData(bboxes=torch.tensor([[4., 6., 40., 30.], [20., 10., 62., 60.]]), labels=torch.tensor([0, 2])),
            InstanceData(bboxes=torch.tensor([[10., 10., 30., 50.]]), labels=torch.tensor([1]))]


METAS = [dict(img_shape=(64, 64), batch_input_shape=(64, 64), scale_factor=(1.0, 1.0))] * 2


def test_layers_follow_the_original_and_mmdet_names():
    head = MODELS.build(dict(type='FCOSPointHead', num_classes=80, in_channels=256))
    head.init_weights()
    assert head.strides == (8, 16, 32, 64, 128) and len(head.scales) == 5
    assert head.cls_convs[0].conv.bias is not None  # tower convs carry a bias as the original's
    assert type(head.cls_convs[0].gn).__name__ == 'GroupNorm' and head.cls_convs[0].gn.num_groups == 32
    assert torch.allclose(head.conv_cls.bias, torch.full((80, ), -math.log(99)))
    assert abs(float(head.conv_reg.weight.detach().std()) - 0.01) < 2e-3
    assert float(head.conv_centerness.bias.detach()) == 0
    assert float(head.scales[0].scale) == 1.0
    names = {k for k in head.state_dict()}
    assert {'conv_cls.weight', 'conv_reg.weight', 'conv_centerness.weight', 'scales.4.scale',
            'reg_convs.3.gn.bias'} <= names


def test_regression_modes():
    x = feats()
    head = make_head()
    head.train()
    _, reg, _ = head(x)
    assert all((r > 0).all() for r in reg)  # exp
    normed = make_head(norm_on_bbox=True)
    normed.train()
    _, reg_train, _ = normed(x)
    assert all((r >= 0).all() for r in reg_train) and any((r == 0).any() for r in reg_train)  # relu
    normed.eval()
    with torch.no_grad():
        _, reg_test, _ = normed(x)
    for r_train, r_test, s in zip(reg_train, reg_test, STRIDES):
        assert torch.allclose(r_test, r_train.detach() * s)  # stride units while training, pixels at test
    assert normed.assigner.norm_on_bbox  # the assigner follows the head


@pytest.mark.parametrize('on_reg', [False, True])
def test_centerness_branch_position(on_reg):
    head = make_head(centerness_on_reg=on_reg)
    head(feats())[2][0].sum().backward()
    reg_grad = head.reg_convs[0].conv.weight.grad
    cls_grad = head.cls_convs[0].conv.weight.grad
    if on_reg:
        assert reg_grad is not None and reg_grad.abs().sum() > 0 and cls_grad is None
    else:
        assert cls_grad is not None and cls_grad.abs().sum() > 0 and reg_grad is None


def test_losses_are_the_originals_written_out():
    head = make_head(norm_on_bbox=True, center_sampling=True)
    head.train()
    cls_scores, bbox_preds, centernesses = head(feats())
    losses = head.loss_by_feat(cls_scores, bbox_preds, centernesses, gts(), METAS)
    sizes = [c.shape[-2:] for c in cls_scores]
    points = [torch.stack(torch.meshgrid((torch.arange(w) + 0.5) * s, (torch.arange(h) + 0.5) * s, indexing='xy'),
                          -1).reshape(-1, 2) for (h, w), s in zip(sizes, STRIDES)]  # the original's s // 2 + i * s
    t = head.assigner.assign(gts(), points, sizes, STRIDES, 3)
    flat = lambda maps, c: torch.cat([m.permute(0, 2, 3, 1).reshape(2, -1, c) for m in maps], 1)  # noqa: E731
    logits, dist, ctr = flat(cls_scores, 3), flat(bbox_preds, 4), flat(centernesses, 1)[..., 0]
    pos = t.labels < 3
    num_pos = float(pos.sum())
    assert num_pos > 0
    # sigmoid focal loss (alpha 0.25, gamma 2), summed, / num_pos
    onehot = F.one_hot(t.labels, 4)[..., :3].float()
    p = logits.sigmoid()
    pt = torch.where(onehot == 1, p, 1 - p)
    at = torch.where(onehot == 1, 0.25, 0.75)
    focal = -(at * (1 - pt)**2 * torch.log(pt)).sum() / num_pos
    assert torch.allclose(losses['loss_cls'], focal, rtol=1e-4)
    # -log((I + 1) / (U + 1)) on (l, t, r, b) in strides, weighted by the center-ness target / its sum
    pd, td, w = dist[pos], t.bbox_targets[pos], t.centerness_targets[pos]
    inter = (torch.min(pd[:, 0], td[:, 0]) + torch.min(pd[:, 2], td[:, 2])) * (
        torch.min(pd[:, 1], td[:, 1]) + torch.min(pd[:, 3], td[:, 3]))
    union = (pd[:, 0] + pd[:, 2]) * (pd[:, 1] + pd[:, 3]) + (td[:, 0] + td[:, 2]) * (td[:, 1] + td[:, 3]) - inter
    iou_loss = (-torch.log((inter + 1) / (union + 1)) * w).sum() / w.sum()
    assert torch.allclose(losses['loss_bbox'], iou_loss, rtol=1e-5)
    # center-ness BCE with logits, summed, / num_pos
    bce = F.binary_cross_entropy_with_logits(ctr[pos], w, reduction='sum') / num_pos
    assert torch.allclose(losses['loss_centerness'], bce, rtol=1e-5)
    sum(losses.values()).backward()
    for name in ('conv_cls', 'conv_reg', 'conv_centerness'):
        assert getattr(head, name).weight.grad.abs().sum() > 0, name
    assert head.scales[0].scale.grad is not None


def test_losses_without_any_box_keep_the_graph():
    head = make_head()
    head.train()
    empty = [InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))] * 2
    losses = head.loss_by_feat(*head(feats()), empty, METAS)
    assert float(losses['loss_bbox']) == 0 and float(losses['loss_centerness']) == 0
    assert float(losses['loss_cls']) > 0
    sum(losses.values()).backward()
    assert head.conv_cls.weight.grad.abs().sum() > 0


def hand_outputs():
    """One level, stride 8, 4x4 points (4, 12, 20, 28), 2 classes, 1 image; every logit very negative but:

    - point (12, 12) class 0: cls 0.9, center-ness 0.25, distances (10, 20, 30, 40);
    - point (28, 4) class 1: cls 0.5, center-ness 0.01 (product 0.005 < 0.05: kept, the threshold is on cls);
    - point (4, 20) class 1: cls 0.04 (< 0.05, dropped) with center-ness 1.
    """
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    cls = torch.full((1, 2, 4, 4), -20.0)
    ctr = torch.full((1, 1, 4, 4), -20.0)
    reg = torch.full((1, 4, 4, 4), 2.0)
    cls[0, 0, 1, 1], ctr[0, 0, 1, 1] = logit(0.9), logit(0.25)
    reg[0, :, 1, 1] = torch.tensor([10., 20., 30., 40.])
    cls[0, 1, 0, 3], ctr[0, 0, 0, 3] = logit(0.5), logit(0.01)
    cls[0, 1, 2, 0], ctr[0, 0, 2, 0] = logit(0.04), 20.0
    return [cls], [reg], [ctr]


def one_level_head(**test_cfg):
    return MODELS.build(dict(type='FCOSPointHead', num_classes=2, in_channels=8, feat_channels=8, strides=(8, ),
                             regress_ranges=((-1, 1e8), ), norm_cfg=dict(type='GN', num_groups=2),
                             test_cfg=test_cfg))


def test_original_inference_by_hand():
    head = one_level_head()  # the defaults: the original's
    meta = [dict(img_shape=(30, 32), scale_factor=(2.0, 0.5))]
    res = head.predict_by_feat(*hand_outputs(), batch_img_metas=meta, rescale=False)[0]
    assert res.labels.tolist() == [0, 1]
    assert torch.allclose(res.scores, torch.tensor([math.sqrt(0.9 * 0.25), math.sqrt(0.5 * 0.01)]))
    # (12, 12) -+ (10, 20, 30, 40) = (2, -8, 42, 52), clipped to the 32 x 30 image
    assert torch.allclose(res.bboxes[0], torch.tensor([2., 0., 32., 30.]))
    # (28, 4) -+ 2 = (26, 2, 30, 6)
    assert torch.allclose(res.bboxes[1], torch.tensor([26., 2., 30., 6.]))
    rescaled = head.predict_by_feat(*hand_outputs(), batch_img_metas=meta, rescale=True)[0]
    assert torch.allclose(rescaled.bboxes[0], torch.tensor([1., 0., 16., 60.]))  # / (2, 0.5, 2, 0.5)
    # rescale defaults to False (mmdet's convention): boxes stay in input pixels
    default = head.predict_by_feat(*hand_outputs(), batch_img_metas=meta)[0]
    assert torch.equal(default.bboxes, res.bboxes) and torch.equal(default.scores, res.scores)
    product = one_level_head(score_mode='product').predict_by_feat(*hand_outputs(), batch_img_metas=meta)[0]
    assert torch.allclose(product.scores, torch.tensor([0.9 * 0.25, 0.5 * 0.01]))
    # without NMS every candidate comes back
    assert len(head.predict_by_feat(*hand_outputs(), batch_img_metas=meta, with_nms=False)[0]) == 2


def test_candidate_ranking_and_nms():
    (cls, ), (reg, ), (ctr, ) = hand_outputs()
    meta = [dict(img_shape=(32, 32), scale_factor=(1.0, 1.0))]
    # nms_pre = 1: cls * center-ness ranks (12, 12) first (0.225 > 0.005), cls alone too (0.9 > 0.5)
    # so make (28, 4) the better one by center-ness: cls 0.5, ctr 0.9 -> 0.45 > 0.225
    ctr[0, 0, 0, 3] = math.log(0.9 / 0.1)
    by_ctr = one_level_head(nms_pre=1).predict_by_feat([cls], [reg], [ctr], batch_img_metas=meta)[0]
    by_cls = one_level_head(nms_pre=1, nms_pre_by='cls').predict_by_feat([cls], [reg], [ctr], batch_img_metas=meta)[0]
    assert by_ctr.labels.tolist() == [1] and by_cls.labels.tolist() == [0]
    # class-aware NMS: a same-class duplicate of (12, 12) one cell right overlaps it by IoU > 0.6 and goes
    cls[0, 0, 1, 2] = math.log(0.8 / 0.2)
    ctr[0, 0, 1, 2] = math.log(0.25 / 0.75)
    reg[0, :, 1, 2] = torch.tensor([18., 20., 22., 40.])
    res = one_level_head().predict_by_feat([cls], [reg], [ctr], batch_img_metas=meta)[0]
    assert res.labels.tolist() == [1, 0] and len(res) == 2
    cls[0, 1, 1, 2] = cls[0, 0, 1, 2]  # the same box in the other class survives
    res = one_level_head().predict_by_feat([cls], [reg], [ctr], batch_img_metas=meta)[0]
    assert sorted(res.labels.tolist()) == [0, 1, 1] and len(res) == 3


def test_post_process_is_mmdets():
    """After the candidates, mmdet's inherited _bbox_post_process: called once per image, its keys act."""
    meta = [dict(img_shape=(30, 32), scale_factor=(2.0, 0.5))] * 2
    outs = [[torch.cat([m, m])] for m in (o[0] for o in hand_outputs())]  # the same two candidates twice
    head = one_level_head(score_mode='product')
    seen, mmdet_post_process = [], BaseDenseHead._bbox_post_process

    def post_process(self, results, cfg, **kwargs):  # records what mmdet's post-process is given, then runs it
        seen.append((results.scores.clone(), results.get('score_factors'), cfg, kwargs))
        return mmdet_post_process(self, results, cfg, **kwargs)

    with mock.patch.object(BaseDenseHead, '_bbox_post_process', autospec=True, side_effect=post_process) as post:
        res = head.predict_by_feat(*outs, batch_img_metas=meta, rescale=True)
    assert post.call_count == 2
    scores, factors, cfg, kwargs = seen[0]
    assert kwargs == dict(rescale=True, with_nms=True, img_meta=meta[0]) and cfg.max_per_img == 100
    # 'product' hands cls and center-ness apart (score_factors), mmdet multiplies them
    assert torch.allclose(scores, torch.tensor([0.9, 0.5])) and torch.allclose(factors, torch.tensor([0.25, 0.01]))
    for r in res:
        assert torch.allclose(r.scores, torch.tensor([0.9 * 0.25, 0.5 * 0.01]))
        assert torch.allclose(r.bboxes, torch.tensor([[1., 0., 16., 60.], [13., 4., 15., 12.]]))
    # 'sqrt' (the original's score) is made in the head: mmdet's post-process only multiplies
    with mock.patch.object(BaseDenseHead, '_bbox_post_process', autospec=True, side_effect=post_process):
        one_level_head().predict_by_feat(*hand_outputs(), batch_img_metas=meta[:1])
    scores, factors, _, kwargs = seen[-1]
    assert factors is None and kwargs['rescale'] is False
    assert torch.allclose(scores, torch.tensor([math.sqrt(0.9 * 0.25), math.sqrt(0.5 * 0.01)]))
    # max_per_img and min_bbox_size of mmdet: (1, 0, 16, 60) is 15 px wide, (13, 4, 15, 12) 2 px wide
    top1 = one_level_head(max_per_img=1).predict_by_feat(*hand_outputs(), batch_img_metas=meta[:1], rescale=True)[0]
    assert top1.labels.tolist() == [0]
    big = one_level_head(min_bbox_size=2).predict_by_feat(*hand_outputs(), batch_img_metas=meta[:1], rescale=True)
    assert big[0].labels.tolist() == [0]
    with pytest.raises(ValueError, match='scale_factor'):
        head.predict_by_feat(*hand_outputs(), batch_img_metas=[dict(img_shape=(30, 32))], rescale=True)
    with pytest.raises(ValueError, match='img_shape'):
        head.predict_by_feat(*hand_outputs(), batch_img_metas=[dict(scale_factor=(1., 1.))])


def test_one_source_of_points():
    """The points the assigner gets in loss_by_feat are the prior generator's, those predict_by_feat decodes at."""
    for offset, first in ((0.5, 4.), (0.0, 0.)):
        head = MODELS.build(dict(type='FCOSPointHead', num_classes=2, in_channels=8, feat_channels=8, strides=(8, ),
                                 regress_ranges=((-1, 1e8), ), norm_cfg=dict(type='GN', num_groups=2),
                                 point_offset=offset))
        assert head.prior_generator.offset == offset and head.prior_generator.strides == [(8, 8)]
        cls, reg, ctr = hand_outputs()
        with mock.patch.object(head.assigner, 'assign', wraps=head.assigner.assign) as assign:
            head.loss_by_feat(cls, reg, ctr, [InstanceData(bboxes=torch.tensor([[0., 0., 20., 20.]]),
                                                           labels=torch.tensor([1]))], [{}])
        (points, ), sizes, strides = assign.call_args.args[1:4]
        grid = (torch.arange(4.) + offset) * 8
        assert sizes == [(4, 4)] and strides == (8, )
        assert torch.equal(points, torch.stack(torch.meshgrid(grid, grid, indexing='xy'), -1).reshape(-1, 2))
        # predict decodes at the same points: distances 2 around point (column 3, row 0)
        res = head.predict_by_feat(cls, reg, ctr, batch_img_metas=[dict(img_shape=(64, 64))], with_nms=False)[0]
        assert torch.equal(res.bboxes[res.labels == 1][0], torch.tensor([first + 24 - 2, first - 2, first + 26,
                                                                          first + 2]).clamp(min=0))
    # an old config's assigner offset: accepted when equal (deprecated), refused when not
    with pytest.warns(DeprecationWarning, match='point_offset'):
        make_head(train_cfg=dict(assigner=dict(type='FCOSRangeAssigner', offset=0.5)))
    with pytest.raises(ValueError, match='offset'):
        make_head(point_offset=0.5, train_cfg=dict(assigner=dict(type='FCOSRangeAssigner', offset=0.0)))


def test_predict_batches_images_independently():
    head = make_head()
    head.eval()
    with torch.no_grad():
        outs = head(feats(2))
    both = head.predict_by_feat(*outs, batch_img_metas=METAS)
    assert len(both[0]) > 0 and len(both[1]) > 0
    for i in range(2):
        single = head.predict_by_feat(*[[m[i:i + 1] for m in o] for o in outs], batch_img_metas=METAS[:1])[0]
        # element-wise CPU kernels may round a batch's tail elements differently: equal up to float rounding
        assert torch.equal(both[i].labels, single.labels)
        assert torch.allclose(both[i].scores, single.scores, rtol=1e-6, atol=0)
        assert torch.allclose(both[i].bboxes, single.bboxes, rtol=1e-6, atol=1e-5)


def test_configuration_errors():
    with pytest.raises(ValueError, match='norm_on_bbox'):
        make_head(norm_on_bbox=True, train_cfg=dict(assigner=dict(type='FCOSRangeAssigner', norm_on_bbox=False)))
    with pytest.raises(ValueError, match='center_sampling'):
        make_head(center_sampling=True, train_cfg=dict(assigner=dict(type='FCOSRangeAssigner',
                                                                     center_sampling=False)))
    with pytest.raises(ValueError, match='regress_ranges'):
        make_head(regress_ranges=((-1, 1e8), ))
    with pytest.raises(ValueError, match='score_mode'):
        make_head(test_cfg=dict(score_mode='mean'))
    with pytest.raises(ValueError, match='strides'):
        make_head()(feats()[:1])
    # the same value in both places is no conflict, and the mmdet-style arguments reach the assigner
    head = make_head(center_sampling=True, center_sample_radius=2.0,
                     train_cfg=dict(assigner=dict(type='FCOSRangeAssigner', center_sampling=True)))
    assert head.assigner.center_sampling is True and head.assigner.center_sample_radius == 2.0
    assert head.assigner.regress_ranges == ((-1.0, 48.0), (48.0, 1e8)) and head.assigner.norm_on_bbox is False


def test_original_checkpoint_keys_map_onto_the_detector():
    path = osp.join(ORIGINAL_CKPTS, 'fcos_imprv_r50_fpn_1x.json')
    if not osp.exists(path):
        pytest.skip(f'{path} not found (shared/reference beside the repository)')
    with open(path) as f:
        original = json.load(f)['state_dict']
    model = MODELS.build(dict(
        type='FCOS',
        backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(1, 2, 3), style='caffe',
                      norm_cfg=dict(type='BN', requires_grad=False)),
        neck=dict(type='FPN', in_channels=[512, 1024, 2048], out_channels=256, start_level=0,
                  add_extra_convs='on_output', num_outs=5, relu_before_extra_convs=True),
        bbox_head=dict(type='FCOSPointHead', num_classes=80, in_channels=256)))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    key_map = original_fcos_key_map(depth=50)
    mapped = {}
    for key, shape in original.items():
        key = key[len('module.'):]
        assert key in key_map, key
        mapped[key_map[key]] = tuple(shape) if shape else ()
    assert mapped.keys() == {k for k in ours if not k.endswith('num_batches_tracked')}
    for k, s in mapped.items():  # the original Scale is a (1,) tensor, mmcv's a 0-dim one
        assert ours[k] == s or (k.endswith('.scale') and s == (1, ) and ours[k] == ()), (k, s, ours[k])
