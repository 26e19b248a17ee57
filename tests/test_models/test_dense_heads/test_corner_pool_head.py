"""CornerPoolHead: parameter counts and key mapping against the released checkpoints, losses against the original
formulas (DETECTORS.md 2.8), gradients, prediction, options and errors."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import CornerPoolHead
from mmkp.registry import MODELS
from tests.conftest import ORIGINAL_CHECKPOINTS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
FIXTURES = ORIGINAL_CHECKPOINTS  # the released checkpoints' key/shape lists, ../shared/reference
SMALL_HEAD = dict(num_classes=3, in_channels=16, num_stacks=2, pool_channels=8, feat_channels=16)


def _converter(name):
    spec = importlib.util.spec_from_file_location(f'_conv_{name}', osp.join(REPO, 'tools', 'model_converters',
                                                                            f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(backbone, **head):
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(
            dict(
                type='CornerNet',
                data_preprocessor=dict(type='DetDataPreprocessor'),
                backbone=backbone,
                neck=None,
                bbox_head=dict(type='CornerPoolHead', num_classes=80, **head)))


@pytest.mark.parametrize('name, backbone, head, converter', [
    ('cornernetlite_cornernet', dict(type='HourglassNet'), dict(), 'cornernet_to_mmkp'),
    ('cornernetlite_cornernet_squeeze', dict(type='HourglassSqueezeNet'), dict(pred_kernel_size=1),
     'cornernet_squeeze_to_mmkp'),
])
def test_full_model_matches_the_released_checkpoint(name, backbone, head, converter):
    with open(osp.join(FIXTURES, f'{name}.json')) as f:
        original = json.load(f)
    model = _build(backbone, **head)
    num_params = sum(p.numel() for p in model.parameters())
    assert num_params == original['num_params'] == {
        'cornernetlite_cornernet': 201_035_212,
        'cornernetlite_cornernet_squeeze': 31_771_852
    }[name]
    backbone_keys, left = _converter(converter).convert_backbone(original['state_dict'])
    head_keys, rest = CornerPoolHead.convert_original_state_dict({k: original['state_dict'][k] for k in left})
    assert rest == []
    mapped = {f'backbone.{k}': v for k, v in backbone_keys.items()}
    mapped.update(head_keys)
    assert len(mapped) == len(original['state_dict'])  # one to one
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(mapped) == set(ours)
    assert all(mapped[k] == ours[k] for k in ours)


def test_original_cornernet_repository_names_map_as_well():
    with open(osp.join(FIXTURES, 'cornernet_orig_cornernet.json')) as f:
        original = json.load(f)['state_dict']
    lite_names = {k for k in original if k.startswith(('module.tl_', 'module.br_'))}
    head_keys, left = CornerPoolHead.convert_original_state_dict(original)
    assert len(head_keys) == len(lite_names) == 168 and not set(left) & lite_names
    assert 'bbox_head.tl_modules.1.p_conv1.bn.running_var' in head_keys
    assert 'bbox_head.br_offs.0.1.weight' in head_keys


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


def original_corner_loss(outs, targets, num_stacks):
    """CornerNet-Lite ``CornerNet_Loss.forward`` as DETECTORS.md 2.8 states it (clamped sigmoid focal loss per
    corner type /N_pos, pull/push 0.1 summed over images, offsets SmoothL1 sum /(#objects + 1e-4); / #stacks)."""
    tl_heats, br_heats, tl_tags, br_tags, tl_offs, br_offs = outs
    mask = targets.mask

    def focal(logits, gt):
        p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
        pos = gt.eq(1)
        num_pos = pos.sum()
        pos_loss = (torch.log(p) * (1 - p)**2)[pos].sum()
        neg_loss = (torch.log(1 - p) * p**2 * (1 - gt)**4)[~pos].sum()
        return -(pos_loss + neg_loss) / num_pos

    def gather(feat, ind):  # (B, C, H, W), (B, M) -> (B, M, C)
        flat = feat.flatten(2).transpose(1, 2)
        return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, flat.shape[2]))

    total = dict(focal=0.0, pull=0.0, push=0.0, off=0.0)
    tl_ind, br_ind = targets.indices['top_left'], targets.indices['bottom_right']
    num = mask.sum()
    for s in range(num_stacks):
        total['focal'] += focal(tl_heats[s], targets.heatmaps['top_left']) + focal(
            br_heats[s], targets.heatmaps['bottom_right'])
        t0, t1 = gather(tl_tags[s], tl_ind)[..., 0], gather(br_tags[s], br_ind)[..., 0]
        for i in range(mask.shape[0]):
            n = int(mask[i].sum())
            e0, e1 = t0[i][mask[i]], t1[i][mask[i]]
            mean = (e0 + e1) / 2
            total['pull'] += 0.1 * (((e0 - mean)**2).sum() + ((e1 - mean)**2).sum()) / (n + 1e-4)
            dist = F.relu(1 - (mean[:, None] - mean[None, :]).abs()) - 1 / (n + 1e-4)
            total['push'] += 0.1 * dist.sum() / (n * (n - 1) + 1e-4)
        for off, gt_off, ind in ((tl_offs[s], targets.offsets['top_left'], tl_ind),
                                 (br_offs[s], targets.offsets['bottom_right'], br_ind)):
            total['off'] += F.smooth_l1_loss(gather(off, ind)[mask], gt_off[mask], reduction='sum') / (num + 1e-4)
    return {k: v / num_stacks for k, v in total.items()}


def test_losses_equal_the_original_formulas():
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    head.init_weights()
    feats, gts, metas = small_inputs()
    outs = head(feats)
    losses = head.loss_by_feat(*outs, gts, metas)
    targets = head.assigner.assign(gts, (16, 16), (63, 63), 3, metas)
    assert targets.mask.sum() == 4
    ref = original_corner_loss(outs, targets, 2)
    assert losses['loss_heatmap'].item() == pytest.approx(ref['focal'].item(), rel=1e-5)
    assert losses['loss_pull'].item() == pytest.approx(ref['pull'].item(), rel=1e-5)
    assert losses['loss_push'].item() == pytest.approx(ref['push'].item(), rel=1e-5)
    assert losses['loss_offset'].item() == pytest.approx(ref['off'].item(), rel=1e-5)
    # a one-object image adds the original's constant push of ~0.1 * 0.9999 (image 2 has one object; float32
    # cancellation in 1 - 1 / 1.0001 leaves ~1e-3 relative error, as in the original)
    one = head.loss_by_feat(*[[o[1:] for o in maps] for maps in outs], gts[1:], metas[1:])
    assert one['loss_push'].item() == pytest.approx(0.1 * 0.99990001, rel=1e-3)


def test_reduction_options():
    torch.manual_seed(0)
    feats, gts, metas = small_inputs()
    default = CornerPoolHead(**SMALL_HEAD)
    other = CornerPoolHead(**SMALL_HEAD, corner_reduction='mean', stack_reduction='sum', offset_norm='clamped')
    other.load_state_dict(default.state_dict())
    outs = default(feats)
    a = default.loss_by_feat(*outs, gts, metas)
    b = other.loss_by_feat(*outs, gts, metas)
    assert b['loss_heatmap'].item() == pytest.approx(a['loss_heatmap'].item(), rel=1e-6)  # x 1/2 x 2
    assert b['loss_pull'].item() == pytest.approx(2 * a['loss_pull'].item(), rel=1e-6)
    # corner mean x stack sum cancel; 4 objects: / max(4, 1) instead of / (4 + 1e-4)
    assert b['loss_offset'].item() == pytest.approx(a['loss_offset'].item() * (4 + 1e-4) / 4, rel=1e-6)


def test_gradients_reach_every_stack_and_branch():
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    feats, gts, metas = small_inputs()
    feats = [f.requires_grad_(True) for f in feats]
    losses = head.loss_by_feat(*head(feats), gts, metas)
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
        by_feat = head.predict_by_feat(*head(feats), batch_img_metas=metas, rescale=True)
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
    assert isinstance(head.test_cfg, (type(None), dict, ConfigDict))


def test_images_without_objects():
    """The COCO configs train on every image (``filter_empty_gt=False``): empty images give heatmap losses only."""
    torch.manual_seed(0)
    head = CornerPoolHead(**SMALL_HEAD)
    feats, gts, metas = small_inputs()
    empty = InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))
    for batch_gts in ([empty, empty], [gts[0], empty]):
        losses = head.loss_by_feat(*head(feats), batch_gts, metas)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        if batch_gts[0] is empty:
            assert losses['loss_pull'] == 0 and losses['loss_push'] == 0 and losses['loss_offset'] == 0
            assert losses['loss_heatmap'] > 0
