"""CornerNet-Saccade head and attention targets (princeton-vl/CornerNet-Lite@6a54505
``core/models/CornerNet_Saccade.py``,
``core/sample/cornernet_saccade.py::create_attention_mask``, ``core/models/py_utils/losses.py``)."""
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import SaccadeHead
from mmkp.models.task_modules.assigners import SaccadeAttentionAssigner
from mmkp.registry import MODELS
from tests.conftest import ORIGINAL_CHECKPOINTS

BUFFERS = ('.running_mean', '.running_var', '.num_batches_tracked')


def _released():
    path = osp.join(ORIGINAL_CHECKPOINTS, 'cornernetlite_cornernet_saccade.json')
    if not osp.isfile(path):
        pytest.fail(f'{path} not found')
    with open(path) as f:
        return json.load(f)


def test_detector_parameters_equal_the_released_model():
    ckpt = _released()
    with torch.device('meta'):
        model = MODELS.build(dict(type='CornerNet', backbone=dict(type='Hourglass54'), neck=None,
                                  bbox_head=dict(type='SaccadeHead', num_classes=80)))
    assert ckpt['num_params'] == 116_969_339
    assert sum(p.numel() for p in model.parameters()) == 116_969_339
    assert sum(p.numel() for p in model.backbone.parameters()) == 89_884_544
    # attention branches alone, against the released keys
    att = sum(math.prod(s) for k, s in ckpt['state_dict'].items() if k.startswith('module.att_modules.')
              and not k.endswith(BUFFERS))
    assert sum(p.numel() for p in model.bbox_head.att_modules.parameters()) == att
    assert len(model.state_dict()) == ckpt['num_tensors'] == 828


def _small_head(**kwargs):
    cfg = dict(num_classes=3, num_stacks=2, in_channels=8, pool_channels=4, feat_channels=8,
               attention_channels=(12, 12, 8), attention_feat_channels=6)
    cfg.update(kwargs)
    head = SaccadeHead(**cfg)
    head.init_weights()
    return head


def _inputs(batch=2, stacks=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(batch, 8, 16, 16, generator=g) for _ in range(stacks)]
    merges = []
    for _ in range(stacks):
        merges += [torch.randn(batch, 12, 4, 4, generator=g), torch.randn(batch, 12, 8, 8, generator=g),
                   torch.randn(batch, 8, 16, 16, generator=g)]
    return tuple(feats + merges)


def test_forward_names_shapes_and_attention_bias():
    head = _small_head()
    maps = head(_inputs())
    assert maps.num_stacks == 2
    assert sorted(maps) == ['attention', 'bottom_right', 'top_left']
    assert [maps['attention'][k][1].shape for k in ('large', 'medium', 'small')] == [
        (2, 1, 4, 4), (2, 1, 8, 8), (2, 1, 16, 16)]
    assert maps['top_left']['heatmap'][0].shape == (2, 3, 16, 16)
    for stack in head.att_modules:
        for branch in stack:
            assert torch.all(branch[-1].bias == -2.19)
            assert branch[0].conv.bias is not None and branch[0].norm_name is None
    # the attention of stack 1 reads the merges of stack 1
    x = _inputs()
    torch.testing.assert_close(maps['attention']['medium'][1], head.att_modules[1][1](x[2 + 3 + 1]))


def test_wrong_number_of_inputs_is_refused():
    head = _small_head()
    with pytest.raises(ValueError, match='num_stacks=2'):
        head(_inputs()[:2])


def test_attention_targets_land_in_the_right_map_and_cell():
    assigner = SaccadeAttentionAssigner()
    boxes = torch.tensor([
        [10., 20., 30., 40.],  # long side 20: small (64 x 64, stride 4), centre (20, 30) -> cell (7, 5)
        [100., 100., 132., 110.],  # long side 32: small and medium (inclusive), centre (116, 105)
        [0., 0., 96., 50.],  # long side 96: medium and large, centre (48, 25)
        [50., 10., 170., 250.],  # long side 240: large, centre (110, 130) -> (8, 6)
    ])
    gt = InstanceData(bboxes=boxes, labels=torch.zeros(4, dtype=torch.long))
    ignored = InstanceData(bboxes=torch.tensor([[200., 200., 210., 204.]]), labels=torch.zeros(1, dtype=torch.long))
    huge = InstanceData(bboxes=torch.tensor([[0., 0., 300., 300.]]), labels=torch.zeros(1, dtype=torch.long))
    metas = [dict(img_shape=(255, 255)), dict(img_shape=(400, 400))]
    large, medium, small = assigner.assign([(gt, ignored), (huge, None)], [(16, 16), (32, 32), (64, 64)], metas)
    expect = {
        # (105 / 4, 116 / 4) -> (26, 29); the ignored box (205, 202) -> (50, 51)
        'small': {(0, 7, 5), (0, 26, 29), (0, 50, 51)},
        'medium': {(0, 13, 14), (0, 3, 6)},
        'large': {(0, 1, 3), (0, 8, 6)},  # (25 / 16, 48 / 16) -> (1, 3)
    }
    for name, target in (('large', large), ('medium', medium), ('small', small)):
        cells = {(b, y, x) for b, _, y, x in target.nonzero().tolist()}
        assert cells == expect[name], name
        assert set(target.unique().tolist()) <= {0.0, 1.0}


def _focal(prob, target, weight=None):
    """The original's ``_focal_loss`` / ``_focal_loss_mask`` written out (alpha 2, beta 4)."""
    prob = prob.clamp(1e-4, 1 - 1e-4)
    weight = torch.ones_like(prob) if weight is None else weight
    pos = target.eq(1)
    pos_loss = (torch.log(prob) * (1 - prob) ** 2 * weight)[pos].sum()
    neg_loss = (torch.log(1 - prob) * prob ** 2 * (1 - target) ** 4 * weight)[~pos].sum()
    num_pos = pos.sum()
    return -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos


def _batch():
    gt0 = InstanceData(bboxes=torch.tensor([[8., 8., 40., 30.], [20., 30., 60., 62.]]),
                       labels=torch.tensor([0, 2]))
    gt1 = InstanceData(bboxes=torch.tensor([[2., 3., 10., 9.]]), labels=torch.tensor([1]))
    ign0 = InstanceData(bboxes=torch.tensor([[40., 4., 50., 12.]]), labels=torch.tensor([1]))
    ign1 = InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))
    metas = [dict(img_shape=(64, 64), batch_input_shape=(64, 64))] * 2
    return [gt0, gt1], [ign0, ign1], metas


@pytest.mark.parametrize('reduction, divisor', [('mean_twice', 4), ('mean', 2)])
def test_attention_loss_equals_the_formula(reduction, divisor):
    head = _small_head(attention_stack_reduction=reduction,
                       train_cfg=dict(attention_assigner=dict(type='SaccadeAttentionAssigner',
                                                              ranges=((24, 64), (8, 24), (0, 8)),
                                                              strides=(16, 8, 4))))
    maps = head(_inputs())
    gts, ignores, metas = _batch()
    losses = head.loss_by_feat(maps, gts, metas, ignores)
    targets = head.get_attention_targets(maps, gts, metas, ignores)
    expected = 0
    for name, target in zip(('large', 'medium', 'small'), targets):
        assert target.sum() > 0
        for stack in range(2):
            expected = expected + _focal(maps['attention'][name][stack].sigmoid(), target)
    torch.testing.assert_close(losses['loss_attention'], expected / divisor)


def test_corner_heatmap_loss_is_masked_under_ignored_objects():
    head = _small_head()
    maps = head(_inputs())
    gts, ignores, metas = _batch()
    targets = head.get_targets(maps, gts, metas, ignores)
    weights = targets.weights['top_left']
    # the ignored box (class 1, image 0) zeroes its corner cells (ratio 16 / 64: (40, 4) -> (10, 1)) in plane 1 only
    assert weights[0, 1, 1, 10] == 0 and weights[0, 1, 3, 12] == 1 and weights[0, 0, 1, 10] == 1
    assert torch.all(weights[1] == 1)
    losses = head.loss_by_feat(maps, gts, metas, ignores)
    expected = 0
    for stack in range(2):
        for keypoint in ('top_left', 'bottom_right'):
            expected = expected + _focal(maps[keypoint]['heatmap'][stack].sigmoid(), targets.heatmaps[keypoint],
                                         targets.weights[keypoint])
    torch.testing.assert_close(losses['loss_heatmap'], expected / 2)
    unmasked = head.loss_by_feat(maps, gts, metas, None)['loss_heatmap']
    assert not torch.allclose(unmasked, losses['loss_heatmap'])


def test_default_targets_use_overlap_05():
    head = SaccadeHead(num_classes=80)
    assert head.assigner.min_overlap == 0.5 and head.mask_ignored
    assert head.attention_assigner.ranges == ((96, 256), (32, 96), (0, 32))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match='attention_stack_reduction'):
        _small_head(attention_stack_reduction='sum')
