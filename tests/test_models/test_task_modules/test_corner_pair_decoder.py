"""CornerPairDecoder and topk_peaks against the original decoding (princeton-vl/CornerNet-Lite@6a54505
``core/models/py_utils/utils.py::_decode``, written out below) and mmdet's dense peak search."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.utils import get_local_maximum, get_topk_from_heatmap

from mmkp.models.task_modules.coders import CornerPairDecoder
from mmkp.models.utils import local_maximum, topk_peaks


def dense_peaks(logits, k, kernel=3):
    """mmdet 3.3's dense peak search (``get_local_maximum`` + ``get_topk_from_heatmap``), an independent reference:
    scores, flat pixel index, labels, ys, xs."""
    scores, inds, labels, ys, xs = get_topk_from_heatmap(get_local_maximum(logits.sigmoid(), kernel), k)
    return scores, inds, labels, ys, xs


def peaky_logits(batch=2, classes=3, size=24, seed=0):
    """Smooth blobs (many high non-peak pixels) plus noise: forces the larger candidate sets / the dense path."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, classes, size, size, generator=g) - 4
    blobs = F.avg_pool2d(torch.randn(batch, classes, size, size, generator=g).clamp(min=0) * 12, 7, 1, 3)
    return noise + blobs


@pytest.mark.parametrize('candidates', [(1000, 16000), (30, ), (30, 200), (5, )])
def test_topk_peaks_equals_dense(candidates):
    for logits in (torch.randn(2, 4, 20, 17) * 3, peaky_logits()):
        ours = topk_peaks(logits, 25, 3, candidates)
        ref = dense_peaks(logits, 25)
        assert torch.equal(ours[0], ref[0])  # scores
        for a, b in zip(ours[1:], ref[1:]):  # index, labels, ys, xs (no ties in random maps)
            assert torch.equal(a.long(), b.long())
        assert (ours[0] > 0.05).all()  # real peaks, not the zeros of suppressed pixels


def test_peaky_maps_need_the_fallbacks():
    logits = peaky_logits()
    flat = logits.flatten(1)
    is_peak = (local_maximum(logits.sigmoid(), 3) > 0).flatten(1)
    top30 = flat.topk(30)[1]
    assert (is_peak.gather(1, top30).sum(1) < 25).any()  # 30 candidates are too few: (30, 200) and (30,) fall back


def test_topk_peaks_borders_and_plateaus():
    logits = torch.full((1, 1, 5, 6), -5.0)
    logits[0, 0, 0, 0] = 3.0  # corner peak: the window is cut at the border
    logits[0, 0, 4, 5] = 2.0
    logits[0, 0, 2, 2] = 1.0  # plateau of two equal maxima: both are peaks (maxpool == heat)
    logits[0, 0, 2, 3] = 1.0
    logits[0, 0, 0, 1] = 2.5  # next to a larger value: not a peak
    scores, index, labels, ys, xs = topk_peaks(logits, 4, 3, (6, ))
    assert torch.equal(scores, torch.tensor([[3.0, 2.0, 1.0, 1.0]]).sigmoid())
    assert sorted(index[0].tolist()[2:]) == [2 * 6 + 2, 2 * 6 + 3]
    assert index[0, :2].tolist() == [0, 4 * 6 + 5]


def original_decode(tl_heat, br_heat, tl_tag, br_tag, tl_regr, br_regr, K, kernel, ae_threshold, num_dets):
    """CornerNet-Lite ``_decode`` as DETECTORS.md 2.10 states it, step by step, with ``expand``."""
    batch, cat, height, width = tl_heat.shape
    tl_heat, br_heat = local_maximum(tl_heat.sigmoid(), kernel), local_maximum(br_heat.sigmoid(), kernel)

    def topk(heat):
        scores, inds = heat.view(batch, -1).topk(K)
        clses = inds // (height * width)
        inds = inds % (height * width)
        return scores, inds, clses, (inds // width).float(), (inds % width).float()

    def gather(feat, inds):
        feat = feat.permute(0, 2, 3, 1).reshape(batch, height * width, -1)
        return feat.gather(1, inds.unsqueeze(2).expand(batch, K, feat.shape[2]))

    tl_scores, tl_inds, tl_clses, tl_ys, tl_xs = topk(tl_heat)
    br_scores, br_inds, br_clses, br_ys, br_xs = topk(br_heat)
    tl_off, br_off = gather(tl_regr, tl_inds).view(batch, K, 1, 2), gather(br_regr, br_inds).view(batch, 1, K, 2)
    tl_xs = tl_xs.view(batch, K, 1).expand(batch, K, K) + tl_off[..., 0]
    tl_ys = tl_ys.view(batch, K, 1).expand(batch, K, K) + tl_off[..., 1]
    br_xs = br_xs.view(batch, 1, K).expand(batch, K, K) + br_off[..., 0]
    br_ys = br_ys.view(batch, 1, K).expand(batch, K, K) + br_off[..., 1]
    bboxes = torch.stack((tl_xs, tl_ys, br_xs, br_ys), dim=3)
    dists = (gather(tl_tag, tl_inds).view(batch, K, 1) - gather(br_tag, br_inds).view(batch, 1, K)).abs()
    scores = (tl_scores.view(batch, K, 1) + br_scores.view(batch, 1, K)) / 2
    scores = scores.clone()
    scores[tl_clses.view(batch, K, 1).expand(batch, K, K) != br_clses.view(batch, 1, K).expand(batch, K, K)] = -1
    scores[dists > ae_threshold] = -1
    scores[br_xs < tl_xs] = -1
    scores[br_ys < tl_ys] = -1
    scores, inds = scores.view(batch, -1).topk(num_dets)
    bboxes = bboxes.view(batch, -1, 4).gather(1, inds.unsqueeze(2).expand(batch, num_dets, 4))
    clses = tl_clses.view(batch, K, 1).expand(batch, K, K).reshape(batch, -1).gather(1, inds)
    return bboxes, scores, clses


def random_maps(batch=2, classes=3, h=20, w=24, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return dict(
        tl_heat=torch.randn(batch, classes, h, w, generator=g, dtype=dtype) * 2 - 2,
        br_heat=torch.randn(batch, classes, h, w, generator=g, dtype=dtype) * 2 - 2,
        tl_emb=torch.randn(batch, 1, h, w, generator=g, dtype=dtype) * 0.5,
        br_emb=torch.randn(batch, 1, h, w, generator=g, dtype=dtype) * 0.5,
        tl_off=torch.rand(batch, 2, h, w, generator=g, dtype=dtype),
        br_off=torch.rand(batch, 2, h, w, generator=g, dtype=dtype))


def test_decode_pairs_equals_the_original():
    maps = random_maps()
    decoder = CornerPairDecoder(topk=30, num_dets=200, ae_threshold=0.5)
    bboxes, scores, labels, tl_s, br_s = decoder.decode_pairs(*maps.values())
    ref_bboxes, ref_scores, ref_labels = original_decode(*maps.values(), K=30, kernel=3, ae_threshold=0.5,
                                                         num_dets=200)
    assert torch.equal(scores, ref_scores)
    valid = scores > -1
    assert valid.sum() > 20  # the comparison covers real pairs
    assert torch.equal(bboxes[valid], ref_bboxes[valid])
    assert torch.equal(labels[valid], ref_labels[valid])
    assert torch.allclose((tl_s + br_s)[valid] / 2, scores[valid])


def test_zero_size_pairs_kept_as_the_original_or_rejected():
    h = w = 8
    maps = {k: torch.zeros(1, c, h, w) for k, c in (('tl_heat', 1), ('br_heat', 1), ('tl_emb', 1), ('br_emb', 1),
                                                     ('tl_off', 2), ('br_off', 2))}
    maps['tl_heat'] -= 10
    maps['br_heat'] -= 10
    maps['tl_heat'][0, 0, 2, 3] = 5
    maps['br_heat'][0, 0, 2, 6] = 4  # same row: zero height
    keep = CornerPairDecoder(topk=1, num_dets=1).decode_pairs(*maps.values())
    reject = CornerPairDecoder(topk=1, num_dets=1, keep_zero_size=False).decode_pairs(*maps.values())
    assert keep[1].item() > 0 and reject[1].item() == -1
    assert keep[0][0, 0].tolist() == [3.0, 2.0, 6.0, 2.0]


def test_decode_maps_to_original_pixels():
    maps = random_maps(batch=2, h=16, w=16)
    decoder = CornerPairDecoder(topk=20, num_dets=100, clip_border=False)
    cells, scores = decoder.decode_pairs(*maps.values())[:2]
    metas = [
        dict(batch_input_shape=(63, 63), border=[5.0, 40.0, 7.0, 50.0], ori_shape=(35, 43), img_shape=(63, 63)),
        dict(batch_input_shape=(63, 63), scale_factor=(2.0, 0.5), ori_shape=(120, 30), img_shape=(60, 60)),
    ]
    results = decoder.decode(*maps.values(), metas)
    ratio = 63 / 16  # input / output, as 511 / 128
    for i, (res, shift, scale) in enumerate(zip(results, [(7, 5), (0, 0)], [(1, 1), (2.0, 0.5)])):
        valid = scores[i] > -1
        expected = cells[i][valid] * ratio - torch.tensor([shift[0], shift[1], shift[0], shift[1]])
        expected = expected / torch.tensor([scale[0], scale[1], scale[0], scale[1]])
        assert torch.allclose(res.bboxes, expected, atol=1e-5)
        assert torch.equal(res.scores, scores[i][valid])
        assert (res.scores[:-1] >= res.scores[1:]).all() and (res.scores > -1).all()
    clipped = CornerPairDecoder(topk=20, num_dets=100).decode(*maps.values(), metas)[0].bboxes
    assert clipped.min() >= 0 and (clipped[:, 0::2] <= 43).all() and (clipped[:, 1::2] <= 35).all()


def test_decode_reads_each_images_own_metas():
    """Two images of one batch with different input sizes per meta: each is scaled by its own (no metas[0])."""
    maps = random_maps(batch=2, h=16, w=16)
    decoder = CornerPairDecoder(topk=20, num_dets=100, clip_border=False)
    metas = [dict(batch_input_shape=(64, 64), ori_shape=(64, 64), img_shape=(64, 64)),
             dict(batch_input_shape=(32, 48), ori_shape=(32, 48), img_shape=(32, 48))]
    both = decoder.decode(*maps.values(), metas)
    for i, meta in enumerate(metas):
        alone = decoder.decode(*[m[i:i + 1] for m in maps.values()], [meta])[0]
        assert len(alone) > 0 and torch.equal(both[i].bboxes, alone.bboxes)
    cells, scores = decoder.decode_pairs(*[m[1:] for m in maps.values()])[:2]
    expected = cells[0][scores[0] > -1] * torch.tensor([48 / 16, 32 / 16, 48 / 16, 32 / 16])
    assert torch.allclose(both[1].bboxes, expected)


def test_border_rejection():
    """``reject_border`` (the original's ``no_border``): a top-left corner on row / column 0 or a bottom-right corner
    on the last row / column rejects the pair, whatever its offsets."""
    h, w = 8, 10
    base = {k: torch.zeros(1, c, h, w) for k, c in (('tl_heat', 1), ('br_heat', 1), ('tl_emb', 1), ('br_emb', 1),
                                                     ('tl_off', 2), ('br_off', 2))}
    base['tl_heat'] -= 10
    base['br_heat'] -= 10
    base['tl_off'] += 0.5

    def decode(tl, br, **kwargs):
        maps = {k: v.clone() for k, v in base.items()}
        maps['tl_heat'][0, 0, tl[0], tl[1]] = 5
        maps['br_heat'][0, 0, br[0], br[1]] = 4
        return CornerPairDecoder(topk=1, num_dets=1, **kwargs).decode_pairs(*maps.values())[1].item()

    inside = ((1, 1), (6, 8))
    for tl, br in (inside, ((0, 3), (6, 8)), ((2, 0), (6, 8)), ((1, 1), (7, 8)), ((1, 1), (5, 9))):
        assert decode(tl, br) > 0  # kept without the option
        assert (decode(tl, br, reject_border=True) > 0) == ((tl, br) == inside), (tl, br)
    # the rule is per corner type (top-left: first row / column; bottom-right: last row / column)
    assert decode((1, 1), (6, 8), reject_border=True) > 0 and decode((7, 1), (7, 8), reject_border=True) == -1


def test_decode_outputs_takes_named_maps():
    maps = random_maps()
    decoder = CornerPairDecoder(topk=20, num_dets=100)
    metas = [dict(batch_input_shape=(80, 96), ori_shape=(80, 96), img_shape=(80, 96))] * 2
    named = {k: dict(heatmap=maps[f'{p}_heat'], embedding=maps[f'{p}_emb'], offset=maps[f'{p}_off'])
             for k, p in (('top_left', 'tl'), ('bottom_right', 'br'))}
    named['center'] = dict(heatmap=maps['tl_heat'])  # other keypoint types are ignored
    a, b = decoder.decode_outputs(named, metas), decoder.decode(*maps.values(), metas)
    assert all(len(x) > 0 and torch.equal(x.bboxes, y.bboxes) for x, y in zip(a, b))
    with pytest.raises(KeyError, match='bottom_right'):
        decoder.decode_outputs({'top_left': named['top_left']}, metas)
    with pytest.raises(KeyError, match='embedding'):
        decoder.decode_outputs(dict(named, top_left=dict(heatmap=maps['tl_heat'], offset=maps['tl_off'])), metas)


def test_bad_input_raises():
    maps = random_maps()
    decoder = CornerPairDecoder()
    with pytest.raises(ValueError, match='embeddings must have 1 channel'):
        decoder.decode_pairs(maps['tl_heat'], maps['br_heat'], maps['tl_off'], maps['br_emb'], maps['tl_off'],
                             maps['br_off'])
    with pytest.raises(ValueError, match='tl_heat'):
        decoder.decode_pairs(maps['tl_heat'][0], *list(maps.values())[1:])
    with pytest.raises(ValueError, match='metas'):
        decoder.decode(*maps.values(), [dict(batch_input_shape=(10, 10))])
    with pytest.raises(ValueError, match='topk'):
        CornerPairDecoder(topk=0)
    with pytest.raises(ValueError, match='odd'):
        CornerPairDecoder(local_maximum_kernel=2)
