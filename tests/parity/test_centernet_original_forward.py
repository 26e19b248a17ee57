"""Forward parity of mmkp's converted CenterNet (Objects as Points) models with the original networks.

The originals are :mod:`tests.parity.original_centernet_reference`, plain PyTorch written from xingyizhou/CenterNet
@ 4c50fd3 ``src/lib/models/networks/{pose_dla_dcn,resnet_dcn,large_hourglass}.py`` (DCNv2 from
``DCNv2/dcn_v2.py`` and ``DCNv2/src/cuda/dcn_v2_im2col_cuda.cu``, decoding from ``src/lib/models/decode.py``), whose
``state_dict()`` is exactly each released file's key list. For each released model:

1. the reference gets seeded random weights, BN statistics included (``randomize_``: calibrated on one batch, then
   perturbed, so that every running mean / variance changes the output), and its ``state_dict`` is written as the
   released file is (``{'epoch', 'state_dict'}``, no prefix);
2. mmkp's converter entry point (:func:`mmkp.converters.core.convert_file` with the CenterNet family: it recognises
   the file, picks its released-model config, folds the ResNet-DCN biases) writes the mmkp checkpoint (for the
   hourglass the same steps run in memory, see :func:`_build_pair`);
3. the model of ``configs/centernet/centernet_{r18-dcnv2,dla34-dcnv2-2x,hourglass104}_released_coco.py`` loads it
   with ``strict=True``; both networks run in eval mode on the same normalised input and their maps are compared:
   heatmap logits (the original's ``hm`` before ``ctdet.process`` applies the sigmoid), ``wh``, ``reg``; then the
   boxes of the original's ``ctdet_decode`` against those of mmkp's head (``predict_by_feat``).

Two precisions separate structure from rounding:

* float64 (reference, checkpoint and model all in float64; mmcv's CPU deformable convolution runs in float64): the
  two networks must be the same function, every map within :data:`FLOAT64_BOUND` once the reference rounds its DCN
  sampling coordinates as mmcv's kernel does (``floorf``: :func:`test_mmcv_takes_floorf_of_double_coordinates`);
* float32 (the released files' precision): each map within :data:`FLOAT32_BOUND`; then each candidate for an inexact
  layer is measured on its own inside the reference -- the DCN op (the reference's DCNv2 against mmcv's
  ``modulated_deform_conv2d``, ``set_deform_fn``) and, for ResNet-DCN, the bias fold (a reference whose DCN biases
  are folded as the converter folds them) -- and with both made the same on the two sides the rest of the network
  must agree within :data:`NON_DCN_BOUND`.

Every measured max |diff| is printed (``pytest -s``); ``configs/centernet/README.md`` ("Forward parity with the
original") records them.
"""
import copy
import json
import math
import os.path as osp
from typing import Dict, Tuple

import pytest
import torch
from torch import Tensor

from mmkp.converters.centernet import CENTERNET_FAMILY, RELEASED_CONFIGS
from mmkp.converters.core import build_model_from_config, convert_file, target_shapes_from_config
from tests.conftest import ORIGINAL_CHECKPOINTS, REPO
from tests.parity import original_centernet_reference as ref

#: key list name -> (reference class, released layout name, input (H, W)); H, W multiples of 32 (128 for HG)
MODELS = {
    'resdcn18': (ref.PoseResNet, 'CenterNet ctdet_coco_resdcn18.pth', (96, 128)),
    'dla_2x': (ref.DLASeg, 'CenterNet ctdet_coco_dla_2x.pth', (96, 128)),
    'hg': (ref.HourglassNet, 'CenterNet ctdet_coco_hg.pth', (128, 128)),
}
MAPS = ('hm', 'wh', 'reg')
#: float32 bounds on max |mmkp - original| per map (maps of magnitude up to about 10), on these random weights; the
#: measured values (configs/centernet/README.md) are far below: the bounds leave room for a BLAS that sums the DCN
#: GEMMs in another order than the reference's einsum; the DCN-free hourglass must agree as the rest of the networks
FLOAT32_BOUND = {'resdcn18': 2e-4, 'dla_2x': 2e-4, 'hg': 1e-5}
FLOAT64_BOUND = 1e-9
#: float64 with the original's exact floor: mmcv's floorf of double coordinates (see the float64 test)
FLOAT64_MMCV_FLOORF_BOUND = 1e-4
#: float32: the reference's DCNv2 op against mmcv's op inside the same network
DCN_FLOAT32_BOUND = 1e-4
#: float32: the rest of the network once the DCN op and the bias fold are the same on both sides
NON_DCN_BOUND = 1e-6


def _key_list(name: str) -> Dict[str, list]:
    path = osp.join(ORIGINAL_CHECKPOINTS, f'centernet_zhou_ctdet_coco_{name}.json')
    if not osp.isfile(path):
        pytest.fail(f'{path} not found: put ../shared beside the checkout or set MMKP_REFERENCE_CHECKPOINTS')
    with open(path) as f:
        return json.load(f)['state_dict']


def _inputs(name: str, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """(calibration batch of 2, test image of 1), normalised-image-like values, seeded."""
    height, width = MODELS[name][2]
    gen = torch.Generator().manual_seed(1)
    calibration = torch.randn(2, 3, height, width, generator=gen, dtype=torch.float64).to(dtype)
    image = torch.randn(1, 3, height, width, generator=gen, dtype=torch.float64).to(dtype)
    return calibration, image


def _build_pair(name: str, dtype: torch.dtype, tmp_path,
                via_file: bool = True) -> Tuple[torch.nn.Module, torch.nn.Module, str]:
    """The random reference, converted by mmkp's converter and loaded strictly into the released-model config's
    model; returns (original, model, config).

    ``via_file``: written as the released file (``{'epoch', 'state_dict'}``) and converted by ``convert_file``, the
    script's entry point (it recognises the file, picks its config, writes the mmkp checkpoint, which is read back);
    otherwise (the 191 M-parameter hourglass, to save about 5 s of writing and reading 765 MB twice) the same steps
    without the files: the family's layout detection, released config and ``StateDictConverter.convert``.
    """
    cls, layout, _ = MODELS[name]
    calibration, _ = _inputs(name, dtype)
    torch.manual_seed(0)  # the constructors' default init (overwritten by randomize_ anyway)
    original = ref.randomize_(cls().to(dtype), calibration, seed=0)
    if via_file:
        src, dst = tmp_path / f'ctdet_coco_{name}.pth', tmp_path / f'mmkp_{name}.pth'
        torch.save({'epoch': 230, 'state_dict': original.state_dict()}, src)
        result, meta = convert_file(CENTERNET_FAMILY, str(src), str(dst), repo_root=REPO)
        config = meta['config']
        state_dict = torch.load(dst, map_location='cpu', weights_only=True)['state_dict']
    else:
        source = original.state_dict()
        config = osp.join(REPO, CENTERNET_FAMILY.released_config(CENTERNET_FAMILY.layout_of(list(source))))
        result = CENTERNET_FAMILY.converter(target_shapes_from_config(config)).convert(source, f'ctdet_coco_{name}')
        state_dict = result.state_dict
    assert result.layout.name == layout and config == osp.join(REPO, RELEASED_CONFIGS[layout])
    model = build_model_from_config(config).to(dtype)
    model.load_state_dict(state_dict, strict=True)
    return original.eval(), model.eval(), config


@torch.no_grad()
def _maps(original: torch.nn.Module, model: torch.nn.Module, image: Tensor) -> Tuple[dict, dict]:
    """The last stack's ``hm`` (logits), ``wh``, ``reg`` of both networks."""
    want = original(image)[-1]
    heatmaps, sizes, offsets = model.bbox_head(model.extract_feat(image))
    got = dict(hm=heatmaps[-1], wh=sizes[-1], reg=offsets[-1])
    return want, got


def _reference_maps_with(deform_fn, original: torch.nn.Module, model: torch.nn.Module, image: Tensor) -> dict:
    """The reference's maps with ``deform_fn`` in all its DCNs (put back to its own DCNv2 afterwards)."""
    ref.set_deform_fn(original, deform_fn)
    try:
        return _maps(original, model, image)[0]
    finally:
        ref.set_deform_fn(original, None)


def _max_diffs(want: dict, got: dict) -> Dict[str, float]:
    assert {k: tuple(v.shape) for k, v in want.items()} == {k: tuple(v.shape) for k, v in got.items()}
    return {k: (want[k] - got[k]).abs().max().item() for k in MAPS}


def _report(name: str, what: str, diffs: Dict[str, float], want: dict) -> None:
    scale = ', '.join(f'{k} max|x| {want[k].abs().max().item():.6g}' for k in MAPS)
    print(f'\n[forward parity] {name} {what}: ' + ', '.join(f'{k} {v:.3e}' for k, v in diffs.items()) + f' ({scale})')


def _mmcv_dcn(x, offset, mask, weight, bias, stride, padding, dilation):
    """mmcv's op (what mmkp's necks run) with the reference op's signature."""
    from mmcv.ops import modulated_deform_conv2d
    return modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation, 1, 1)


def _floorf(t: Tensor) -> Tensor:
    """C's ``floorf`` on a double: round to float32 first (mmcv 2.1's ``modulated_deform_conv`` kernels take
    ``floorf(h)`` whatever the scalar type)."""
    return torch.floor(t.float()).to(t.dtype)


def _mmcv_rounding_dcn(x, offset, mask, weight, bias, stride, padding, dilation):
    return ref.modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation, floor=_floorf)


# --- the reference itself ----------------------------------------------------------------------------------------


@pytest.mark.parametrize('name', list(MODELS))
def test_reference_state_dict_is_the_released_key_list(name):
    """Keys, shapes and their order: the reference's module tree is the original's."""
    torch.manual_seed(0)
    with torch.device('meta'):
        model = MODELS[name][0]()
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == list(_key_list(name).items())


def _dcn_loop(x, offset, mask, weight, bias, stride, padding):
    """DCNv2 per output cell and tap, as ``modulated_deformable_im2col_gpu_kernel`` / ``dmcn_im2col_bilinear``
    read (scalar Python; small inputs only)."""
    n, c, h, w = x.shape
    ho, wo = offset.shape[-2:]
    kh, kw = weight.shape[-2:]
    out = torch.zeros(n, weight.shape[0], ho, wo, dtype=x.dtype)
    for b in range(n):
        for oy in range(ho):
            for ox in range(wo):
                col = torch.zeros(c, kh, kw, dtype=x.dtype)
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        y = oy * stride - padding + i + offset[b, 2 * k, oy, ox].item()
                        xx = ox * stride - padding + j + offset[b, 2 * k + 1, oy, ox].item()
                        if not (y > -1 and xx > -1 and y < h and xx < w):
                            continue
                        y0, x0 = math.floor(y), math.floor(xx)
                        ly, lx = y - y0, xx - x0
                        for yy, xc, cw in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx),
                                           (y0 + 1, x0, ly * (1 - lx)), (y0 + 1, x0 + 1, ly * lx)):
                            if 0 <= yy <= h - 1 and 0 <= xc <= w - 1:
                                col[:, i, j] += cw * x[b, :, yy, xc]
                        col[:, i, j] *= mask[b, k, oy, ox]
                out[b, :, oy, ox] = (weight * col).sum((1, 2, 3)) + bias
    return out


def _dcn_case(dtype, stride=1, seed=0, size=(5, 6), offset_scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    offset = torch.randn(2, 18, ho, wo, generator=gen, dtype=torch.float64) * offset_scale
    mask = torch.rand(2, 9, ho, wo, generator=gen, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    return [t.to(dtype) for t in (x, offset, mask, weight, bias)]


@pytest.mark.parametrize('stride', [1, 2])
def test_reference_dcn_is_the_dcnv2_kernel(stride):
    """The vectorised reference op equals the per-tap loop (offsets up to several cells, many samples outside)."""
    x, offset, mask, weight, bias = _dcn_case(torch.float64, stride)
    got = ref.modulated_deform_conv2d(x, offset, mask, weight, bias, stride=stride, padding=1)
    torch.testing.assert_close(got, _dcn_loop(x, offset, mask, weight, bias, stride, 1), rtol=0, atol=1e-12)
    zero = ref.modulated_deform_conv2d(x, torch.zeros_like(offset), torch.ones_like(mask), weight, bias, stride, 1)
    torch.testing.assert_close(zero, torch.nn.functional.conv2d(x, weight, bias, stride=stride, padding=1), rtol=0,
                               atol=1e-12)


def test_mmcv_dcn_against_the_reference_dcn():
    """mmcv's ``ModulatedDeformConv2dPack`` (what mmkp's necks run) against the reference ``DCN`` with the same
    tensors: the same function in float64; float32 rounding only. The offset layout (o1, o2 -> interleaved (dy, dx)
    per tap, the mask third) is the same: a swapped (dx, dy) reading would differ by O(1)."""
    from mmcv.ops import ModulatedDeformConv2dPack
    gen = torch.Generator().manual_seed(3)
    for dtype, bound in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        original = ref.DCN(32, 16).to(dtype)
        mine = ModulatedDeformConv2dPack(32, 16, 3, stride=1, padding=1, deform_groups=1, bias=True).to(dtype)
        with torch.no_grad():
            for t in (original.weight, original.bias, original.conv_offset_mask.weight,
                      original.conv_offset_mask.bias):
                t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64) * (0.5 if t.dim() > 1 else 1.0))
            mine.weight.copy_(original.weight)
            mine.bias.copy_(original.bias)
            mine.conv_offset.weight.copy_(original.conv_offset_mask.weight)
            mine.conv_offset.bias.copy_(original.conv_offset_mask.bias)
        x = torch.randn(2, 32, 12, 17, generator=gen, dtype=torch.float64).to(dtype)
        with torch.no_grad():
            want, got = original(x), mine(x)
            offsets = original.conv_offset_mask(x)[:, :18]
            o1, o2, m = torch.chunk(original.conv_offset_mask(x), 3, dim=1)
            swapped = torch.cat((o1, o2), 1).view(2, 9, 2, 12, 17).flip(2).reshape(2, 18, 12, 17)
            wrong = ref.modulated_deform_conv2d(x, swapped, torch.sigmoid(m), original.weight, original.bias)
        diff = (want - got).abs().max().item()
        print(f'\n[forward parity] one DCN 32->16 on 2x32x12x17, {dtype}: max|diff| {diff:.3e} '
              f'(max|out| {want.abs().max().item():.6g}, offsets up to {offsets.abs().max().item():.6g} cells)')
        assert offsets.abs().max() > 3  # samples far off the grid and outside the map
        assert diff < bound
        assert (wrong - got).abs().max() > 1


def test_mmcv_takes_floorf_of_double_coordinates():
    """The one float64 difference between mmcv's op and DCNv2: mmcv's CPU kernel (and, by its source, the CUDA one:
    ``mmcv/ops/csrc/common/cuda/modulated_deform_conv_cuda_kernel.cuh``) computes ``h_low = floorf(h)``, which
    rounds a double coordinate to float32 first. A coordinate 3e-8 below the grid line
    2 becomes 2.0, and the sample is extrapolated from rows 2 and 3 (weight -3e-8 on row 3) instead of interpolated
    from rows 1 and 2: an error of 3e-8 x (second difference of the input), 6e-5 on a spike of 1000 here. In
    float32 ``floorf`` is exact, so float32 results are not affected."""
    from mmcv.ops import modulated_deform_conv2d as mmcv_dcn
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1000.
    weight = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    weight[0, 0, 1, 1] = 1.  # the centre tap k = 4 only
    offset = torch.zeros(1, 18, 5, 5, dtype=torch.float64)
    offset[0, 8, 1, 2] = 1 - 3e-8  # dy of tap 4 at output (1, 2): sample row 1 + dy = 2 - 3e-8, column 2
    mask = torch.ones(1, 9, 5, 5, dtype=torch.float64)
    got = mmcv_dcn(x, offset, mask, weight, None, 1, 1, 1, 1, 1)[0, 0, 1, 2].item()
    exact = ref.modulated_deform_conv2d(x, offset, mask, weight, None)[0, 0, 1, 2].item()
    floorf = _mmcv_rounding_dcn(x, offset, mask, weight, None, 1, 1, 1)[0, 0, 1, 2].item()
    assert exact == pytest.approx(1000 * (1 - 3e-8), abs=1e-9)
    assert got == floorf == pytest.approx(1000 * (1 + 3e-8), abs=1e-9)
    print(f'\n[forward parity] mmcv floorf in float64: {got!r} against DCNv2 {exact!r} (diff {got - exact:.3e})')


# --- whole networks ---------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def float32_pairs(tmp_path_factory):
    """name -> (original, mmkp model), float32; built lazily (the hourglass is 191 M parameters)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _build_pair(name, torch.float32, tmp_path_factory.mktemp(name), via_file=name != 'hg')[:2]
        return cache[name]

    return get


@pytest.mark.parametrize('name', ['resdcn18', 'dla_2x'])
def test_float64_maps_are_the_same_function(name, tmp_path):
    """Reference, checkpoint and mmkp model in float64.

    With the reference's DCNs taking the floor of each sampling coordinate as mmcv's kernel does (``floorf``, i.e.
    after rounding the double to float32) every map agrees within 1e-9: the networks are the same function, layer
    for layer. With the original's exact ``floor`` a sampling coordinate that lies below a grid line by less than
    float32 rounding is interpolated by mmcv from the next cell pair (a linear extrapolation over a step of about
    1e-7 cells), which moves float64 maps by up to :data:`FLOAT64_MMCV_FLOORF_BOUND` -- an mmcv quirk of float64
    only (``floorf`` of a float32 coordinate is exact). With these weights no coordinate falls there (both runs
    agree); with an earlier version of ``randomize_`` the DLA-34 maps moved by up to 5.864e-06.
    """
    original, model, _ = _build_pair(name, torch.float64, tmp_path)
    _, image = _inputs(name, torch.float64)
    want, got = _maps(original, model, image)
    diffs = _max_diffs(want, got)
    _report(name, 'float64, reference DCNv2 op (floor)', diffs, want)
    assert max(diffs.values()) < FLOAT64_MMCV_FLOORF_BOUND, diffs
    assert all(want[k].abs().max() > 0.1 for k in MAPS)  # maps that carry signal
    want_floorf = _reference_maps_with(_mmcv_rounding_dcn, original, model, image)
    same = _max_diffs(want_floorf, got)
    _report(name, 'float64, reference DCNv2 op with floorf', same, want_floorf)
    assert max(same.values()) < FLOAT64_BOUND, same


@torch.no_grad()
def _fold_biases_like_the_converter(original: torch.nn.Module) -> torch.nn.Module:
    """A copy of a ``PoseResNet`` whose DCN biases are folded as mmkp's converter folds them (bias 0, BN running
    mean m - b, rounded in the model's dtype): the same function up to that rounding."""
    folded = copy.deepcopy(original)
    for s in range(3):
        dcn, bn = folded.deconv_layers[6 * s], folded.deconv_layers[6 * s + 1]
        bn.running_mean.copy_(bn.running_mean - dcn.bias)
        dcn.bias.zero_()
    return folded


@pytest.mark.parametrize('name', ['resdcn18', 'dla_2x'])
def test_float32_maps_match_the_original(name, float32_pairs):
    """float32, the released precision: each map within :data:`FLOAT32_BOUND` of the original's.

    Then the inexact layers are named. The reference with mmcv's op in its DCNs and, for ResNet-DCN, its DCN biases
    folded as the converter folds them (bias 0, BN running mean m - b) agrees with mmkp within
    :data:`NON_DCN_BOUND` (every other layer is the same arithmetic); the two candidates are measured on their own:
    the DCN op (the reference's DCNv2 against mmcv's inside the reference, within :data:`DCN_FLOAT32_BOUND`) and the
    fold (float32 rounding of x + b - m against x - (m - b), amplified by the layers after it).
    """
    original, model = float32_pairs(name)
    _, image = _inputs(name, torch.float32)
    want, got = _maps(original, model, image)
    diffs = _max_diffs(want, got)
    _report(name, 'float32, reference DCNv2 op', diffs, want)
    assert max(diffs.values()) < FLOAT32_BOUND[name], diffs
    # the same reference network with mmcv's op in its DCNs (and, for ResNet-DCN, the biases folded as mmkp's
    # converter folds them): the rest of the network, and the DCN op on its own
    same_ops = _fold_biases_like_the_converter(original) if name == 'resdcn18' else copy.deepcopy(original)
    assert ref.set_deform_fn(same_ops, _mmcv_dcn) == {'resdcn18': 3, 'dla_2x': 16}[name]
    want_same_ops, _ = _maps(same_ops, model, image)
    rest = _max_diffs(want_same_ops, got)
    _report(name, 'float32, reference with mmcv\'s DCN op' + (' and the biases folded' if name == 'resdcn18' else ''),
            rest, want_same_ops)
    assert max(rest.values()) < NON_DCN_BOUND, rest
    if name == 'resdcn18':
        ref.set_deform_fn(same_ops, None)
        want_folded, _ = _maps(same_ops, model, image)
        fold = _max_diffs(want, want_folded)
        _report(name, 'float32, the fold alone (reference against reference with the biases folded)', fold, want)
    ref.set_deform_fn(same_ops, None)
    want_mmcv = _reference_maps_with(_mmcv_dcn, original, model, image)
    dcn_only = _max_diffs(want, want_mmcv)
    _report(name, 'float32, the DCN op alone (reference DCNv2 op against mmcv\'s, in the reference)', dcn_only, want)
    assert max(dcn_only.values()) < DCN_FLOAT32_BOUND, dcn_only


def _match_detections(dets: Tensor, result, score_tol: float = 5e-5, box_tol: float = 2e-3) -> Tuple[float, float]:
    """One-to-one match of the original's detections (x1, y1, x2, y2 in input pixels, score, class) with mmkp's:
    same class, score within ``score_tol``, box within ``box_tol`` (the order of near-equal scores is free)."""
    same_label = dets[:, 5].long()[:, None] == result.labels.long()[None, :]
    score_gap = (dets[:, 4][:, None] - result.scores[None, :]).abs()
    box_gap = (dets[:, None, :4] - result.bboxes[None, :, :]).abs().amax(-1)
    match = same_label & (score_gap <= score_tol) & (box_gap <= box_tol)
    assert torch.equal(match.sum(0), torch.ones(len(result), dtype=torch.long)), 'an mmkp detection has no match'
    assert torch.equal(match.sum(1), torch.ones(len(dets), dtype=torch.long)), 'an original detection has no match'
    return box_gap[match].max().item(), score_gap[match].max().item()


@pytest.mark.parametrize('name', ['resdcn18', 'dla_2x'])
def test_decoded_boxes_match_the_original(name, float32_pairs):
    """The original's ``ctdet_decode`` (sigmoid, 3x3 peaks, top 100) on the reference's maps and mmkp's head
    decoding on mmkp's maps give the same 100 detections: classes, scores, boxes (input pixels: cells x 4, the
    ``--keep_res`` affine of an image that fills its canvas)."""
    original, model = float32_pairs(name)
    _, image = _inputs(name, torch.float32)
    height, width = image.shape[-2:]
    meta = dict(batch_input_shape=(height, width), img_shape=(height, width), ori_shape=(height, width),
                pad_shape=(height, width), scale_factor=(1.0, 1.0))
    with torch.no_grad():
        out = original(image)[-1]
        dets = ref.ctdet_decode(out['hm'].sigmoid(), out['wh'], out['reg'], k=100)[0]
        result = model.bbox_head.predict_by_feat(*model.bbox_head(model.extract_feat(image)),
                                                 batch_img_metas=[meta], rescale=True)[0]
    dets[:, :4] *= 4
    assert len(result) == len(dets) == 100
    box_diff, score_diff = _match_detections(dets, result)
    print(f'\n[forward parity] {name} float32 top-100 detections: classes equal, max|diff| boxes {box_diff:.3e} px, '
          f'scores {score_diff:.3e} (scores {dets[:, 4].min().item():.6f}..{dets[:, 4].max().item():.6f})')


def test_hourglass_maps_match_the_original(float32_pairs):
    """Hourglass-104 (2 stacks, no DCN): mmdet ``HourglassNet`` + ``CenterHeatmapHead(num_stacks=2)`` computes the
    maps of both stacks of ``large_hourglass.HourglassNet`` within float32 rounding (the intermediate stack's maps
    are those the original supervises)."""
    original, model = float32_pairs('hg')
    _, image = _inputs('hg', torch.float32)
    with torch.no_grad():
        want = original(image)
        heatmaps, sizes, offsets = model.bbox_head(model.extract_feat(image))
    assert len(want) == len(heatmaps) == 2
    for stack in range(2):
        got = dict(hm=heatmaps[stack], wh=sizes[stack], reg=offsets[stack])
        diffs = _max_diffs(want[stack], got)
        _report('hg', f'float32, stack {stack}', diffs, want[stack])
        assert max(diffs.values()) < FLOAT32_BOUND['hg'], diffs
