"""AssociativeEmbeddingPullPushLoss against the original's formula, mmdet's AssociativeEmbeddingLoss and gradients."""
import pytest
import torch
from mmdet.models.losses import AssociativeEmbeddingLoss

from mmkp.models.losses import AssociativeEmbeddingPullPushLoss, ae_pull_push_loss


def original_ae_loss(tl, br, mask):
    """DETECTORS.md 2.8 written out per image and pair (CornerNet-Lite ``losses.py::_ae_loss``, float64).

    pull_i = sum_k [(t_k - e_k)^2 + (b_k - e_k)^2] / (N + 1e-4);
    push_i = sum over all N^2 valid (j, k) of [relu(1 - |e_j - e_k|) - 1 / (N + 1e-4)] / (N (N - 1) + 1e-4);
    both summed over images.
    """
    pull, push = 0.0, 0.0
    for i in range(tl.shape[0]):
        idx = [k for k in range(tl.shape[1]) if mask[i, k]]
        n = len(idx)
        e = {k: (float(tl[i, k]) + float(br[i, k])) / 2 for k in idx}
        pull += sum((float(tl[i, k]) - e[k])**2 + (float(br[i, k]) - e[k])**2 for k in idx) / (n + 1e-4)
        for j in idx:
            for k in idx:
                push += (max(0.0, 1 - abs(e[j] - e[k])) - 1 / (n + 1e-4)) / (n * (n - 1) + 1e-4)
    return pull, push


def make_batch(counts=(0, 1, 2, 5), max_objs=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    tl = torch.randn(len(counts), max_objs, generator=g, dtype=torch.float64) * 0.7
    br = tl + torch.randn(len(counts), max_objs, generator=g, dtype=torch.float64) * 0.3
    mask = torch.zeros(len(counts), max_objs, dtype=torch.bool)
    for i, c in enumerate(counts):
        mask[i, :c] = True
    return tl, br, mask


def test_matches_the_original_formula_with_its_quirks():
    tl, br, mask = make_batch()
    pull, push = ae_pull_push_loss(tl, br, mask)
    ref_pull, ref_push = original_ae_loss(tl, br, mask)
    assert pull.item() == pytest.approx(ref_pull, rel=1e-12)
    assert push.item() == pytest.approx(ref_push, rel=1e-12)
    # the one-object image alone: the original's push is a constant (1 - 1 / 1.0001) / 1e-4, without gradient
    one = ae_pull_push_loss(tl[1:2], br[1:2], mask[1:2])[1]
    assert one.item() == pytest.approx((1 - 1 / 1.0001) / 1e-4, rel=1e-12)
    assert one.item() == pytest.approx(0.99990001, abs=1e-7)
    # (B, M, 1) inputs (gathered maps) give the same
    pull3, push3 = ae_pull_push_loss(tl.unsqueeze(-1), br.unsqueeze(-1), mask)
    assert torch.equal(pull3, pull) and torch.equal(push3, push)


def test_padding_slots_are_ignored():
    tl, br, mask = make_batch()
    tl2, br2 = tl.clone(), br.clone()
    tl2[~mask] = 100.0
    br2[~mask] = -100.0
    for a, b in zip(ae_pull_push_loss(tl, br, mask), ae_pull_push_loss(tl2, br2, mask)):
        assert torch.equal(a, b)


def _embedding_maps(tl, br, mask, size=8):
    """Put the per-object embeddings into (B, 1, size, size) maps at distinct cells; mmdet's ``match`` lists."""
    batch, max_objs = tl.shape
    tl_map = torch.zeros(batch, 1, size, size, dtype=tl.dtype)
    br_map = torch.zeros(batch, 1, size, size, dtype=tl.dtype)
    match = []
    for i in range(batch):
        pairs = []
        for k in range(max_objs):
            if mask[i, k]:
                ty, tx, by, bx = k, 0, k, size - 1
                tl_map[i, 0, ty, tx] = tl[i, k]
                br_map[i, 0, by, bx] = br[i, k]
                pairs.append([[ty, tx], [by, bx]])
        match.append(pairs)
    return tl_map, br_map, match


def test_mmdet_settings_match_mmdet_associative_embedding_loss():
    tl, br, mask = make_batch(counts=(0, 1, 3, 6))
    ours = AssociativeEmbeddingPullPushLoss(pull_weight=0.25, push_weight=0.3, eps=0.0, push_diagonal='exclude')
    pull, push = ours(tl, br, mask)
    tl_map, br_map, match = _embedding_maps(tl, br, mask)
    ref_pull, ref_push = AssociativeEmbeddingLoss(pull_weight=0.25, push_weight=0.3)(tl_map, br_map, match)
    assert pull.item() == pytest.approx(float(ref_pull), rel=1e-12)
    assert push.item() == pytest.approx(float(ref_push), rel=1e-12)


def test_mean_over_images_and_weights():
    tl, br, mask = make_batch()
    pull_sum, push_sum = ae_pull_push_loss(tl, br, mask, image_reduction='sum')
    pull_mean, push_mean = ae_pull_push_loss(tl, br, mask, image_reduction='mean')
    assert pull_mean.item() == pytest.approx(pull_sum.item() / 4, rel=1e-12)
    assert push_mean.item() == pytest.approx(push_sum.item() / 4, rel=1e-12)
    pull_w, push_w = AssociativeEmbeddingPullPushLoss()(tl, br, mask)  # defaults 0.1 / 0.1
    assert pull_w.item() == pytest.approx(0.1 * pull_sum.item(), rel=1e-12)
    assert push_w.item() == pytest.approx(0.1 * push_sum.item(), rel=1e-12)


def test_gradients():
    tl, br, mask = make_batch(counts=(2, 4, 3))
    tl.requires_grad_(True)
    br.requires_grad_(True)
    for diagonal in ('original', 'exclude'):
        assert torch.autograd.gradcheck(
            lambda a, b: sum(ae_pull_push_loss(a, b, mask, push_diagonal=diagonal)), (tl, br))
    pull, push = ae_pull_push_loss(tl, br, mask)
    (pull + push).backward()
    assert (tl.grad[~mask] == 0).all() and (tl.grad[mask] != 0).all()
    # pull gradient pulls the two corners together: d pull / d t_k = (t_k - b_k) / (N + eps)
    tl.grad = None
    ae_pull_push_loss(tl, br, mask)[0].backward()
    num = mask.sum(1, keepdim=True).double()
    expected = torch.where(mask, (tl - br) / (num + 1e-4), torch.zeros_like(tl))
    assert torch.allclose(tl.grad, expected, atol=1e-12)


def test_bad_input_raises():
    tl, br, mask = make_batch()
    with pytest.raises(ValueError, match='tl_emb'):
        ae_pull_push_loss(tl.unsqueeze(-1).expand(-1, -1, 2), br, mask)
    with pytest.raises(ValueError, match='same'):
        ae_pull_push_loss(tl, br[:, :3], mask)
    with pytest.raises(ValueError, match='push_diagonal'):
        AssociativeEmbeddingPullPushLoss(push_diagonal='diag')
    with pytest.raises(ValueError, match='image_reduction'):
        ae_pull_push_loss(tl, br, mask, image_reduction='max')
