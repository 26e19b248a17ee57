"""Degenerate batches through every dense head (issue 12, item 3): losses and gradients stay finite, positive-only
terms are exactly 0 without objects, and decoding of degenerate logits gives valid results or a clear error.

Heads are built small (8-16 channels, 64 x 64 input px, 16 x 16 keypoint maps at stride 4; FCOS strides 8 and 16)
and fed through ``head.loss(feats, data_samples)``, mmdet's training entry of a dense head, with the samples that
``PackDetInputs`` makes (``gt_instances``, empty ``ignored_instances``, metas). References written out here: the
background-only focal losses without objects (CornerNet-Lite ``core/models/py_utils/losses.py::_focal_loss``,
princeton-vl/CornerNet-Lite@6a54505; xingyizhou/CenterNet@4c50fd3 ``src/lib/models/losses.py::_neg_loss``;
tianzhi0549/FCOS@a773f12 ``fcos_core/layers/sigmoid_focal_loss.py``) and the pull / push of one object per image
(CornerNet-Lite ``losses.py::_ae_loss``), as per-image loops.
"""
import re

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmkp.models.dense_heads import CenterHeatmapHead, CornerPoolHead, SaccadeHead, TripletHead
from mmkp.registry import MODELS

SIZE = 64  # input px (square); keypoint maps 16 x 16 (stride 4)
NUM_CLASSES = 3
META = dict(batch_input_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
            scale_factor=(1.0, 1.0))
HEADS = ('center', 'cornernet', 'cornernet_squeeze', 'fcos', 'saccade', 'triplet')
CORNER_FAMILY = ('cornernet', 'cornernet_squeeze', 'saccade', 'triplet')
#: Terms that only positives (objects) feed: exactly 0 in a batch without objects.
POSITIVE_ONLY = dict(
    center=('loss_size', 'loss_offset'),
    cornernet=('loss_pull', 'loss_push', 'loss_offset'),
    cornernet_squeeze=('loss_pull', 'loss_push', 'loss_offset'),
    fcos=('loss_bbox', 'loss_centerness'),
    saccade=('loss_pull', 'loss_push', 'loss_offset'),
    triplet=('loss_pull', 'loss_push', 'loss_offset'))
#: Heatmap / classification terms (negatives feed them: > 0 in every batch).
DENSE_TERM = dict(center='loss_heatmap', fcos='loss_cls')
CORNER_SMALL = dict(num_classes=NUM_CLASSES, in_channels=16, num_stacks=2, pool_channels=8, feat_channels=16)


def build_head(name):
    """The head ``name`` of :data:`HEADS`, small, initialised as in training (seed 0)."""
    torch.manual_seed(0)
    if name == 'center':
        head = CenterHeatmapHead(num_classes=NUM_CLASSES, in_channels=8, feat_channels=8)
    elif name == 'cornernet':
        head = CornerPoolHead(**CORNER_SMALL)
    elif name == 'cornernet_squeeze':
        head = CornerPoolHead(**CORNER_SMALL, pred_kernel_size=1)
    elif name == 'fcos':
        head = MODELS.build(dict(type='FCOSPointHead', num_classes=NUM_CLASSES, in_channels=16, feat_channels=16,
                                 stacked_convs=2, strides=(8, 16), regress_ranges=((-1, 32), (32, 1e8)),
                                 norm_cfg=dict(type='GN', num_groups=4)))
    elif name == 'saccade':
        head = SaccadeHead(num_classes=NUM_CLASSES, num_stacks=2, in_channels=8, pool_channels=4, feat_channels=8,
                           attention_channels=(12, 12, 8), attention_feat_channels=6)
    elif name == 'triplet':
        head = TripletHead(**CORNER_SMALL)
    else:
        raise KeyError(name)
    head.init_weights()
    return head


def head_inputs(name, batch, seed=1):
    """Random features of the shapes each head takes for a 64 x 64 input."""
    g = torch.Generator().manual_seed(seed)
    if name == 'center':
        return (torch.randn(batch, 8, 16, 16, generator=g), )
    if name == 'fcos':
        return tuple(torch.randn(batch, 16, SIZE // s, SIZE // s, generator=g) for s in (8, 16))
    if name == 'saccade':
        feats = [torch.randn(batch, 8, 16, 16, generator=g) for _ in range(2)]
        merges = []
        for _ in range(2):
            merges += [torch.randn(batch, 12, 4, 4, generator=g), torch.randn(batch, 12, 8, 8, generator=g),
                       torch.randn(batch, 8, 16, 16, generator=g)]
        return tuple(feats + merges)
    return tuple(torch.randn(batch, 16, 16, 16, generator=g) for _ in range(2))


def same_cell_boxes(n=50, seed=0):
    """``n`` class-1 boxes whose corners and centers all fall into one cell of every map (jitter < 0.5 px)."""
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([20., 20., 44., 44.]) + 0.5 * torch.rand(n, 4, generator=g)


#: Per case, per image: (boxes (n, 4) in input px, labels (n,)).
CASES = dict(
    no_boxes=[(torch.zeros(0, 4), []), (torch.zeros(0, 4), [])],
    single_box=[(torch.tensor([[10., 12., 40., 44.]]), [1])],
    same_cell_50=[(same_cell_boxes(), [1] * 50)],
    one_px=[(torch.tensor([[30., 30., 31., 31.]]), [2])],
    whole_image=[(torch.tensor([[0., 0., float(SIZE), float(SIZE)]]), [0])],
    one_object_per_image=[(torch.tensor([[10., 12., 40., 44.]]), [1]), (torch.tensor([[5., 30., 50., 60.]]), [2])],
)


def data_samples(case):
    """DetDataSamples as ``PackDetInputs`` makes them: ``gt_instances``, empty ``ignored_instances``, metas."""
    samples = []
    for boxes, labels in CASES[case]:
        s = DetDataSample(metainfo=dict(META))
        s.gt_instances = InstanceData(bboxes=boxes.clone(), labels=torch.tensor(labels, dtype=torch.long))
        s.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
        samples.append(s)
    return samples


def background_focal(logits, alpha=2.0, clamp=1e-4):
    """Sum over pixels of -log(1 - p) p^alpha, p = clamp(sigmoid(logits)): the focal loss of a map without positives
    (CornerNet-Lite / CenterNet divide by the number of positives only when there is one)."""
    p = logits.sigmoid().clamp(clamp, 1 - clamp)
    return -(torch.log(1 - p) * p**alpha).sum()


def reference_no_box_dense_loss(name, outs):
    """The heatmap / classification loss of a batch without objects, written out per map."""
    if name == 'center':
        return background_focal(outs[0][0])
    if name == 'fcos':  # sigmoid focal (gamma 2, alpha 0.25) of all negatives / max(num_pos, 1)
        total = 0.
        for logits in outs[0]:
            p = logits.sigmoid()
            total = total + (-(1 - 0.25) * p**2 * torch.log(1 - p)).sum()
        return total
    keypoints = ('top_left', 'bottom_right', 'center') if name == 'triplet' else ('top_left', 'bottom_right')
    stacks = outs[keypoints[0]]['heatmap']
    return sum(background_focal(outs[k]['heatmap'][s]) for k in keypoints for s in range(len(stacks))) / len(stacks)


def check_loss_and_gradients(head, losses):
    """Every term a finite scalar; backward of the total gives finite gradients on every head parameter."""
    assert losses, 'no loss terms'
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), f'{key} = {value}'
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in head.named_parameters() if p.grad is not None}
    assert len(grads) > 0, 'no parameter received a gradient'
    bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    assert not bad, f'non-finite gradients: {bad}'
    return grads


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('name', HEADS)
def test_degenerate_batch_losses_and_gradients_are_finite(name, case):
    head = build_head(name)
    head.train()
    samples = data_samples(case)
    feats = head_inputs(name, len(samples))
    losses = head.loss(feats, samples)
    grads = check_loss_and_gradients(head, losses)
    dense = DENSE_TERM.get(name, 'loss_heatmap')
    assert losses[dense] > 0  # negatives always feed the heatmap / classification loss
    # the heatmap (classification) branch learns in every case, even without objects
    cls_weight = 'conv_cls.weight' if name == 'fcos' else ('heatmap_branches.0.2.weight' if name == 'center'
                                                           else 'tl_heats.0.1.weight')
    assert grads[cls_weight].abs().sum() > 0
    if case == 'no_boxes':
        for key in POSITIVE_ONLY[name]:
            assert losses[key].item() == 0.0, f'{key} = {losses[key]} without objects'
        with torch.no_grad():
            outs = head(feats)
        ref = reference_no_box_dense_loss(name, outs)
        assert losses[dense].item() == pytest.approx(ref.item(), rel=1e-4)
    elif name != 'fcos' or case != 'one_px':  # a 1 x 1 px box holds no FCOS point: no positive there
        assert any(losses[k] > 0 for k in POSITIVE_ONLY[name] if k != 'loss_push'), 'objects gave no positive loss'



@pytest.mark.parametrize('name', ('center', 'cornernet', 'triplet'))
def test_same_cell_case_puts_50_objects_into_one_cell_of_each_keypoint(name):
    """The ``same_cell_50`` case is what it claims: all 50 objects are targets (none dropped), and each keypoint type
    puts them all into one cell."""
    head = build_head(name)
    samples = data_samples('same_cell_50')
    gts, metas = [s.gt_instances for s in samples], [s.metainfo for s in samples]
    targets = head.assigner.assign(gts, (16, 16), (SIZE, SIZE), NUM_CLASSES, metas)
    assert int(targets.mask.sum()) == 50
    keypoints = ('center', ) if name == 'center' else head.keypoints
    for keypoint in keypoints:
        cells = targets.indices[keypoint][0][targets.mask[0]]
        assert cells.numel() == 50 and (cells == cells[0]).all(), keypoint

@pytest.mark.parametrize('name', CORNER_FAMILY)
def test_pull_push_with_one_object_per_image(name):
    """Pull = 0.1 * sum_i [(t_i - e_i)^2 + (b_i - e_i)^2] / (1 + 1e-4), push = 0.1 * sum_i (1 - 1 / (1 + 1e-4)) / 1e-4
    (the original's constant for one object), both over the stacks' mean, per-image loop."""
    head = build_head(name)
    samples = data_samples('one_object_per_image')
    feats = head_inputs(name, len(samples))
    outs = head(feats)
    gts = [s.gt_instances for s in samples]
    losses = head.loss_by_feat(outs, gts, [s.metainfo for s in samples], [s.ignored_instances for s in samples])
    targets = head.get_targets(outs, gts, [s.metainfo for s in samples])
    pull, push = 0., 0.
    stacks = outs['top_left']['embedding']
    for s in range(len(stacks)):
        for i in range(len(samples)):
            assert int(targets.mask[i].sum()) == 1
            tl = outs['top_left']['embedding'][s][i, 0].flatten()[targets.indices['top_left'][i, 0]]
            br = outs['bottom_right']['embedding'][s][i, 0].flatten()[targets.indices['bottom_right'][i, 0]]
            e = (tl + br) / 2
            pull = pull + 0.1 * ((tl - e)**2 + (br - e)**2) / (1 + 1e-4)
            push = push + 0.1 * (1 - 1 / (1 + 1e-4)) / 1e-4
    pull, push = pull / len(stacks), push / len(stacks)
    assert losses['loss_pull'].item() == pytest.approx(pull.item(), rel=1e-5)
    assert losses['loss_push'].item() == pytest.approx(push, rel=1e-3)  # float32 cancellation in 1 - 1 / 1.0001
    check_loss_and_gradients(head, losses)
    assert head.tl_tags[0][1].weight.grad.abs().sum() > 0  # the pull reaches the embeddings


def eval_outputs(name, head, batch=2):
    """Eval-mode outputs of random features, as ``predict`` makes them."""
    head.eval()
    with torch.no_grad():
        return head(head_inputs(name, batch))


def set_logits(name, outs, fill):
    """Replace every heatmap / classification (and FCOS center-ness) logit map of ``outs`` by ``fill(shape)``."""
    if name == 'center':
        heat, size, offset = outs
        return [fill(h.shape) for h in heat], size, offset
    if name == 'fcos':
        cls, reg, ctr = outs
        return [fill(c.shape) for c in cls], reg, [fill(c.shape) for c in ctr]
    for keypoint in ('top_left', 'bottom_right', 'center'):
        if keypoint in outs:
            outs[keypoint]['heatmap'] = [fill(h.shape) for h in outs[keypoint]['heatmap']]
    return outs


def decode(name, head, outs):
    metas = [dict(META) for _ in range(2)]
    with torch.no_grad():
        if name in ('center', 'fcos'):
            return head.predict_by_feat(*outs, batch_img_metas=metas, rescale=True)
        return head.predict_by_feat(outs, batch_img_metas=metas, rescale=True)


def with_nan(shape):
    """Random logits with NaN in one cell of every map and in one whole row of the first image."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g)
    x[..., 0, 0] = float('nan')
    x[0, :, shape[-2] // 2, :] = float('nan')
    return x


DEGENERATE_LOGITS = dict(all_zero=torch.zeros, all_equal=lambda shape: torch.full(shape, 3.0))


@pytest.mark.parametrize('logits', list(DEGENERATE_LOGITS))
@pytest.mark.parametrize('name', HEADS)
def test_decoding_degenerate_logits_gives_valid_results(name, logits):
    head = build_head(name)
    outs = set_logits(name, eval_outputs(name, head), DEGENERATE_LOGITS[logits])
    results = decode(name, head, outs)
    assert len(results) == 2
    for r in results:
        assert isinstance(r, InstanceData)
        n = len(r.bboxes)
        assert r.bboxes.shape == (n, 4) and r.scores.shape == (n, ) and r.labels.shape == (n, )
        assert torch.isfinite(r.bboxes).all() and torch.isfinite(r.scores).all()
        assert ((r.scores >= 0) & (r.scores <= 1)).all()
        assert ((r.labels >= 0) & (r.labels < NUM_CLASSES)).all()
    # all-zero logits score sigmoid(0) = 0.5 everywhere, above every head's threshold: something is decoded
    assert sum(len(r) for r in results) > 0


@pytest.mark.parametrize('name', HEADS)
def test_decoding_nan_logits_never_returns_nan(name):
    """The issue's minimum: NaN logits give a clear error or valid, finite results -- never NaN boxes or scores."""
    head = build_head(name)
    outs = set_logits(name, eval_outputs(name, head), with_nan)
    try:
        results = decode(name, head, outs)
    except (ValueError, FloatingPointError) as e:
        assert re.search(r'(?i)nan|non-finite', str(e)), f'unclear error for NaN logits: {e}'
        return
    assert len(results) == 2
    for r in results:
        n = len(r.bboxes)
        assert r.bboxes.shape == (n, 4) and r.scores.shape == (n, ) and r.labels.shape == (n, )
        assert torch.isfinite(r.bboxes).all(), 'non-finite boxes'
        assert torch.isfinite(r.scores).all(), f'{int(torch.isnan(r.scores).sum())} NaN scores of {n}'


@pytest.mark.parametrize('name', HEADS)
def test_decoding_nan_logits_is_a_clear_error(name):
    """NaN logits mean broken weights or inputs: decoding stops with an error that says so, rather than dropping
    the NaN cells (plausible-looking boxes from a broken model, nothing said) or returning NaN scores / boxes."""
    head = build_head(name)
    outs = set_logits(name, eval_outputs(name, head), with_nan)
    with pytest.raises((ValueError, FloatingPointError), match=r'(?i)(nan|non-finite)'):
        decode(name, head, outs)
