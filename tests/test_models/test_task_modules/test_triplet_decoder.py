"""TripletDecoder and the center-region check against a per-box Python reference of Duankaiwen/CenterNet@3ad3a10
``test/coco.py`` (written out below: one box at a time, centers in array order)."""
import pytest
import torch

from mmkp.models.task_modules.coders import CornerPairDecoder, TripletDecoder, center_region_check
from mmkp.registry import TASK_UTILS


def reference_check(boxes, scores, labels, centers, center_scores, center_labels):
    """Per box: n = 3 if w * h <= 22500 else 5, the open central region, the first same-class center inside."""
    out = []
    for (x1, y1, x2, y2), s, c in zip(boxes, scores, labels):
        if s == -1:
            out.append(-1.0)
            continue
        if (x2 - x1) * (y2 - y1) <= 22500:
            left, right, top, bottom = (2 * x1 + x2) / 3, (x1 + 2 * x2) / 3, (2 * y1 + y2) / 3, (y1 + 2 * y2) / 3
        else:
            left, right = (3 * x1 + 2 * x2) / 5, (2 * x1 + 3 * x2) / 5
            top, bottom = (3 * y1 + 2 * y2) / 5, (2 * y1 + 3 * y2) / 5
        new = -1.0
        for (cx, cy), cs, cc in zip(centers, center_scores, center_labels):
            if cc == c and left < cx < right and top < cy < bottom:
                new = (2 * s + cs) / 3
                break
        out.append(new)
    return out


def run_check(boxes, scores, labels, centers, center_scores, center_labels):
    new, _ = center_region_check(
        torch.tensor([boxes], dtype=torch.float32), torch.tensor([scores], dtype=torch.float32),
        torch.tensor([labels]), torch.tensor([centers], dtype=torch.float32),
        torch.tensor([center_scores], dtype=torch.float32), torch.tensor([center_labels]))
    ref = reference_check(boxes, scores, labels, centers, center_scores, center_labels)
    assert new[0].tolist() == pytest.approx(ref, abs=1e-6)
    return new[0].tolist()


def test_inside_boundary_outside():
    # box 0..30: n = 3, region (10, 20) x (10, 20), all exact in float32
    box = [0., 0., 30., 30.]
    assert run_check([box], [0.6], [0], [[15., 15.]], [0.9], [0]) == pytest.approx([(1.2 + 0.9) / 3])
    assert run_check([box], [0.6], [0], [[10., 15.]], [0.9], [0]) == [-1.0]  # on the left boundary: strict
    assert run_check([box], [0.6], [0], [[15., 20.]], [0.9], [0]) == [-1.0]  # on the bottom boundary
    assert run_check([box], [0.6], [0], [[25., 15.]], [0.9], [0]) == [-1.0]  # outside the region, inside the box
    assert run_check([box], [0.6], [0], [[40., 40.]], [0.9], [0]) == [-1.0]  # outside the box


def test_n3_n5_switch_at_22500():
    # (55, 75) lies inside the n = 3 region (50, 100) of both boxes but outside the n = 5 region x in (60, 90)
    small = [0., 0., 150., 150.]  # area exactly 22500: n = 3
    large = [0., 0., 150., 150.5]  # area 22575: n = 5
    new = run_check([small, large], [0.5, 0.5], [1, 1], [[55., 75.]], [0.8], [1])
    assert new[0] == pytest.approx((1.0 + 0.8) / 3) and new[1] == -1.0
    # (75, 75) is inside both regions
    new = run_check([small, large], [0.5, 0.5], [1, 1], [[75., 75.]], [0.8], [1])
    assert new == pytest.approx([0.6, 0.6])
    # n = 5 boundary exactly: x = 60 = (3 * 0 + 2 * 150) / 5
    assert run_check([large], [0.5], [1], [[60., 75.]], [0.8], [1]) == [-1.0]


def test_wrong_class_and_first_match():
    box = [0., 0., 30., 30.]
    assert run_check([box], [0.6], [0], [[15., 15.]], [0.9], [2]) == [-1.0]  # a center of another class
    # three centers inside; the wrong-class one first, then two of the right class: the first of those is used
    new = run_check([box], [0.6], [0], [[15., 15.], [14., 14.], [16., 16.]], [0.95, 0.3, 0.9], [2, 0, 0])
    assert new == pytest.approx([(1.2 + 0.3) / 3])


def test_random_against_reference():
    g = torch.Generator().manual_seed(0)
    n_box, n_ct = 60, 40
    xy = torch.rand(n_box, 2, generator=g) * 200
    wh = torch.rand(n_box, 2, generator=g) * 250
    boxes = torch.cat([xy, xy + wh], 1).round().tolist()  # integer coordinates: boundary hits happen
    scores = (torch.rand(n_box, generator=g)).tolist()
    scores[3] = -1.0
    labels = torch.randint(0, 2, (n_box, ), generator=g).tolist()
    centers = (torch.rand(n_ct, 2, generator=g) * 300).round().tolist()
    center_scores = torch.rand(n_ct, generator=g).sort(descending=True)[0].tolist()
    center_labels = torch.randint(0, 2, (n_ct, ), generator=g).tolist()
    new = run_check(boxes, scores, labels, centers, center_scores, center_labels)
    assert sum(s > -1 for s in new) >= 5 and sum(s == -1 for s in new) >= 5  # both outcomes exercised


def test_no_centers_removes_everything():
    new, ct = center_region_check(torch.tensor([[[0., 0., 30., 30.]]]), torch.tensor([[0.5]]),
                                  torch.tensor([[0]]), torch.zeros(1, 0, 2), torch.zeros(1, 0),
                                  torch.zeros(1, 0, dtype=torch.long))
    assert new.tolist() == [[-1.0]] and ct.tolist() == [[0.0]]


def maps_with(boxes_cells, centers_cells, classes=2, size=32):
    """Logit maps with a corner peak at each box's corners (embedding = box index) and center peaks."""
    tl = torch.full((1, classes, size, size), -8.0)
    br = tl.clone()
    ct = tl.clone()
    # background corners never pair: their embeddings are 100 apart
    tl_emb, br_emb = torch.full((1, 1, size, size), 50.0), torch.full((1, 1, size, size), -50.0)
    for i, (x1, y1, x2, y2, c, logit) in enumerate(boxes_cells):
        tl[0, c, y1, x1] = logit
        br[0, c, y2, x2] = logit
        tl_emb[0, 0, y1, x1] = 3.0 * i
        br_emb[0, 0, y2, x2] = 3.0 * i
    for x, y, c, logit in centers_cells:
        ct[0, c, y, x] = logit
    off = torch.zeros(1, 2, size, size)
    return dict(top_left=dict(heatmap=tl, embedding=tl_emb, offset=off),
                bottom_right=dict(heatmap=br, embedding=br_emb, offset=off.clone()),
                center=dict(heatmap=ct, offset=off.clone()))


def test_decode_outputs_end_to_end():
    # feature 32 x 32 for an input of 128 x 128: 4 pixels per cell
    metas = [dict(batch_input_shape=(128, 128), img_shape=(128, 128), ori_shape=(128, 128))]
    boxes = [(2, 2, 14, 14, 0, 2.0),  # 48 x 48 px: region (64/3, 112/3) px; center cell 8 -> 32 px inside
             (16, 16, 30, 30, 1, 1.0),  # class 1: its only center is of class 0 -> removed
             (3, 20, 9, 29, 0, 0.5)]  # 24 x 36 px, region x (20, 28): center at 24 px (cell 6), y 96 px (cell 24)
    centers = [(8, 8, 0, 1.5), (23, 23, 0, 1.2), (6, 24, 0, 0.0)]
    maps = maps_with(boxes, centers)
    dec = TripletDecoder(topk=5, center_topk=5, num_dets=25)
    res = dec.decode_outputs(maps, metas)[0]
    s = torch.tensor([2.0, 1.0, 0.5]).sigmoid()
    c = torch.tensor([1.5, 1.2, 0.0]).sigmoid()
    expected = sorted([(2 * s[0] + c[0]) / 3, (2 * s[2] + c[2]) / 3], reverse=True)
    assert res.scores.tolist() == pytest.approx([float(v) for v in expected], abs=1e-6)
    assert res.bboxes.tolist() == [[8., 8., 56., 56.], [12., 80., 36., 116.]]
    assert res.labels.tolist() == [0, 0]
    assert res.ct_scores.tolist() == pytest.approx([float(c[0]), float(c[2])], abs=1e-6)
    # the pairs themselves are CornerPairDecoder's (the class 1 box is there before the check)
    pairs = CornerPairDecoder(topk=5, num_dets=25).decode_outputs(maps, metas)[0]
    assert len(pairs) == 3
    # without the check: the pairs and the centers in the metainfo (pixels)
    raw = TripletDecoder(topk=5, center_topk=5, num_dets=25, center_check=False).decode_outputs(maps, metas)[0]
    assert torch.equal(raw.bboxes, pairs.bboxes)
    assert raw.centers[:3].tolist() == [[32., 32.], [92., 92.], [24., 96.]]


def test_registry_defaults_and_errors():
    dec = TASK_UTILS.build(dict(type='TripletDecoder'))
    assert (dec.topk, dec.center_topk, dec.num_dets, dec.small_box_area) == (70, 70, 1000, 22500.0)
    with pytest.raises(ValueError, match='center_topk'):
        TripletDecoder(center_topk=0)
    maps = maps_with([], [])
    del maps['center']
    with pytest.raises(KeyError, match='center'):
        TripletDecoder().decode_outputs(maps, [dict(batch_input_shape=(128, 128))])


@pytest.mark.parametrize('scale', [1.0, 0.5])
def test_boxes_beyond_the_scaled_image_by_more_than_5px_are_removed(scale):
    # input 128 x 128 (4 px per cell), resized image 100 x 100 (padded bottom-right): W_s = H_s = 100 px.
    # x2 cell 26 -> 104 px (< 105: kept), cell 27 -> 108 px (removed); y1 cell -> always inside.
    metas = [dict(batch_input_shape=(128, 128), img_shape=(100, 100), ori_shape=(100 / scale, 100 / scale),
                  scale_factor=(scale, scale))]
    boxes = [(2, 2, 26, 14, 0, 2.0), (2, 16, 27, 24, 0, 1.0)]
    centers = [(14, 8, 0, 1.5), (14, 20, 0, 1.2)]
    maps = maps_with(boxes, centers)
    res = TripletDecoder(topk=5, center_topk=5, num_dets=25).decode_outputs(maps, metas)[0]
    assert len(res) == 1 and res.bboxes[0].tolist() == pytest.approx([8 / scale, 8 / scale, 100 / scale,
                                                                      56 / scale])  # clipped after the check
    kept = TripletDecoder(topk=5, center_topk=5, num_dets=25, outside_margin=None).decode_outputs(maps, metas)[0]
    assert len(kept) == 2
    with pytest.raises(ValueError, match='outside_margin'):
        TripletDecoder(outside_margin=-1)
