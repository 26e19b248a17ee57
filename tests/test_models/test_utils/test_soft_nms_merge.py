"""soft_nms_merge against a sequential re-statement of CornerNet-Lite's ``soft_nms_merge``; corner_nms."""
import math

import pytest
import torch
from mmcv.ops import batched_nms
from mmengine.structures import InstanceData

from mmkp.models.utils import corner_nms, soft_nms_merge


def sequential_soft_nms_merge(boxes, scores, tl, br, sigma=0.5, threshold=1e-3, weight_exp=10.0):
    """DETECTORS.md 2.11 ``soft_nms_merge`` (Gaussian, "+1" areas), one box at a time, for one class.

    Rows are swapped whole (each box keeps its own corner scores), and the kept set (``keep``) is returned, i.e.
    the two deliberate differences of mmkp from the Cython original.
    """
    rows = [[*boxes[i].tolist(), float(scores[i]), float(tl[i]), float(br[i]), i] for i in range(len(boxes))]
    n, i, out = len(rows), 0, []
    while i < n:
        best = max(range(i, n), key=lambda p: (rows[p][4], -p))
        rows[i], rows[best] = rows[best], rows[i]
        tx1, ty1, tx2, ty2, ts, tts, tbs, idx = rows[i]
        mx1, my1, mx2, my2, mts, mbs = tx1 * tts, ty1 * tts, tx2 * tbs, ty2 * tbs, tts, tbs
        pos = i + 1
        while pos < n:
            x1, y1, x2, y2, s, ps_tl, ps_br, _ = rows[pos]
            iw = min(tx2, x2) - max(tx1, x1) + 1
            ih = min(ty2, y2) - max(ty1, y1) + 1
            if iw > 0 and ih > 0:
                ua = (tx2 - tx1 + 1) * (ty2 - ty1 + 1) + (x2 - x1 + 1) * (y2 - y1 + 1) - iw * ih
                ov = iw * ih / ua
                weight = math.exp(-(ov * ov) / sigma)
                mw = (1 - weight)**weight_exp
                mx1, my1 = mx1 + x1 * ps_tl * mw, my1 + y1 * ps_tl * mw
                mx2, my2 = mx2 + x2 * ps_br * mw, my2 + y2 * ps_br * mw
                mts, mbs = mts + ps_tl * mw, mbs + ps_br * mw
                rows[pos][4] = weight * s
                if rows[pos][4] < threshold:
                    rows[pos] = rows[n - 1]
                    n -= 1
                    pos -= 1
            pos += 1
        out.append(([mx1 / mts, my1 / mts, mx2 / mbs, my2 / mbs], ts, idx))
        i += 1
    return out


def clustered_boxes(num=60, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(8, 2, generator=g) * 200
    c = centers[torch.randint(0, 8, (num, ), generator=g)] + torch.randn(num, 2, generator=g) * 6
    wh = 20 + torch.rand(num, 2, generator=g) * 30
    boxes = torch.cat([c - wh / 2, c + wh / 2], 1)
    scores = 0.01 + torch.rand(num, generator=g) * 0.9
    labels = torch.randint(0, classes, (num, ), generator=g)
    tl = torch.rand(num, generator=g) * 0.9 + 0.05
    br = torch.rand(num, generator=g) * 0.9 + 0.05
    return boxes, scores, labels, tl, br


def test_matches_the_sequential_algorithm():
    boxes, scores, labels, tl, br = clustered_boxes()
    merged, kept_scores, keep = soft_nms_merge(boxes, scores, labels, tl, br, weight_exp=10.0)
    ref = []
    for c in labels.unique():
        idx = (labels == c).nonzero()[:, 0]
        for box, score, i in sequential_soft_nms_merge(boxes[idx], scores[idx], tl[idx], br[idx]):
            ref.append((box, score, int(idx[i])))
    assert sorted(keep.tolist()) == sorted(r[2] for r in ref)
    ref_by_index = {r[2]: r for r in ref}
    expected_boxes = torch.tensor([ref_by_index[int(k)][0] for k in keep])
    expected_scores = torch.tensor([ref_by_index[int(k)][1] for k in keep])
    assert torch.allclose(kept_scores, expected_scores, rtol=1e-5)
    assert torch.allclose(merged, expected_boxes, rtol=1e-5, atol=1e-3)
    assert (merged != boxes[keep]).any(), 'the test must exercise merging'
    # blocks of few rows give the same result
    blocked = soft_nms_merge(boxes, scores, labels, tl, br, max_elements=2 * boxes.shape[0])
    assert torch.allclose(blocked[0], merged, atol=1e-4) and torch.equal(blocked[2], keep)


def test_selection_is_mmcv_soft_nms():
    boxes, scores, labels, tl, br = clustered_boxes(seed=1)
    merged, kept_scores, keep = soft_nms_merge(boxes, scores, labels, tl, br)
    cfg = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=1e-3, method='gaussian', offset=1)
    dets, ref_keep = batched_nms(boxes, scores, labels, cfg)
    assert torch.equal(keep, ref_keep) and torch.equal(kept_scores, dets[:, -1])


def test_isolated_boxes_are_unchanged():
    boxes = torch.tensor([[0., 0., 10., 10.], [100., 100., 120., 130.], [0., 0., 10., 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])  # the third overlaps the first but has another class
    merged, kept_scores, keep = soft_nms_merge(boxes, scores, labels, torch.ones(3), torch.ones(3))
    assert torch.equal(merged, boxes[keep]) and torch.equal(kept_scores, scores)


def test_zero_corner_scores_keep_the_box():
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.5, 0.4])
    tl = torch.tensor([0.0, 0.0, 0.0])  # sigmoid underflow: nothing to weight the top-left corners with
    br = torch.tensor([0.9, 0.8, 0.7])
    merged, _, keep = soft_nms_merge(boxes, scores, torch.zeros(3, dtype=torch.long), tl, br)
    assert torch.isfinite(merged).all()
    assert torch.equal(merged[:, :2], boxes[keep, :2])
    assert (merged[0, 2:] > boxes[0, 2:]).all()  # the bottom-right corner is still merged


def test_corner_nms_keeps_the_kept_set_and_the_best():
    boxes, scores, labels, tl, br = clustered_boxes(num=200)
    results = InstanceData(bboxes=boxes, scores=scores, labels=labels, tl_scores=tl, br_scores=br)
    cfg = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=1e-3, method='gaussian', offset=1)
    out = corner_nms(results, cfg, max_per_img=30)
    dets, keep = batched_nms(boxes, scores, labels, cfg)
    assert len(out) == 30
    assert torch.equal(out.scores, dets[:30, -1]) and torch.equal(out.bboxes, boxes[keep[:30]])
    merge_cfg = dict(cfg, type='soft_nms_merge', weight_exp=10)
    merged = corner_nms(results, merge_cfg, max_per_img=30)
    assert torch.equal(merged.scores, out.scores) and torch.equal(merged.labels, out.labels)
    none = corner_nms(results, None, max_per_img=0)
    assert len(none) == 200 and (none.scores[:-1] >= none.scores[1:]).all()
    with pytest.raises(ValueError, match='corner scores'):
        corner_nms(InstanceData(bboxes=boxes, scores=scores, labels=labels), merge_cfg)
    with pytest.raises(ValueError, match='method'):
        soft_nms_merge(boxes, scores, labels, tl, br, method='exp')
    with pytest.raises(ValueError, match='tl_scores'):
        soft_nms_merge(boxes, scores, labels, tl[:3], br)
