"""mmkp's CenterNet-R18 against mmdet 3.3.0's CenterNet with identical weights: raw maps, targets, losses, boxes.

Both models come from their configs: mmdet's ``mmdet::centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py`` and
``mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py`` (``CTResNetNeck`` with and without DCN +
``CenterNetHead``), mmkp's ``configs/centernet/centernet_r18-dcnv2_6xb19-crop512-140e_coco.py`` (model only, the
same mmdet ``ResNet`` + ``CTResNetNeck``, mmkp's ``CenterHeatmapHead``; ``use_dcn=False`` for the plain neck as
mmdet's R18 config). Backbone and neck are the same code on both sides (mmcv's ``ModulatedDeformConv2dPack`` for the
DCN); the head's tensors are renamed ``bbox_head.{heatmap,wh,offset}_head.*`` ->
``bbox_head.{heatmap,size,offset}_branches.0.*`` (the map of ``tools/analysis_tools/benchmark_all.py``).

mmkp is configured with mmdet's choices where they differ from the original's (xingyizhou/CenterNet@4c50fd3
``src/lib/datasets/sample/ctdet.py``, mmkp's defaults):

* targets: ``GaussianHeatmapAssigner(radius_formula='corrected', min_overlap=0.3, clip_to=None)`` (sigma = d / 6);
* heatmap loss: ``HeatmapFocalLoss(clamp_eps=0)`` (mmdet's ``GaussianFocalLoss`` clamps nothing, eps 1e-12);
* decoding: ``CenterHeatmapDecoder(clip_border=False)``, top 100, 3x3 peaks, no NMS (mmdet's ``test_cfg``).

mmdet's forward returns sigmoid heatmaps, mmkp's logits: the raw maps are compared after a sigmoid of mmkp's.

What no option reproduces (mmdet ``CenterNetHead.get_targets``, one image and one box at a time), and so what the
tests avoid or check separately:

1. radius: mmdet takes ``gaussian_radius`` of the scaled box size (h, w) as it is; mmkp, as the original, of
   ``(ceil h, ceil w)``. They agree when the box sides are whole feature cells (the boxes of
   :func:`cell_aligned_gts`: sides multiples of the stride 4, corners on a quarter-pixel grid, so that every
   scaled coordinate is exact in float32); for other boxes mmkp's radius can be one larger
   (:func:`test_heatmap_matches_gen_gaussian_target_loop` checks mmkp's heatmap box by box against mmdet's
   ``gen_gaussian_target`` with the ceiled sizes, and that mmdet's own radius differs for some boxes).
2. objects whose centers fall in one cell: mmdet writes their size / offset targets into the same dense cell (the
   last object wins) with one weight, mmkp keeps one target per object. The tests' boxes have distinct center cells.
3. normalisation of the size and offset L1 losses: mmdet divides by 2 * max(1, #pixels where the heatmap target is
   1) (= 2 N for N objects at distinct cells), mmkp by 2 N + 1e-4 (mmkp's head, as the original's ``RegL1Loss``):
   mmkp's size and offset losses are mmdet's times 2N / (2N + 1e-4), which the loss test applies.
4. mmdet computes each Gaussian kernel in float32, mmkp in float64 then rounds to float32: heatmap targets agree
   to 1 ulp (atol 1e-6), not bit for bit.
5. centers outside the map (boxes not clipped): mmdet's indexing fails or wraps, mmkp clamps the cell; not tested.
6. radius precision: mmdet computes the radius in float32 tensors, mmkp in float64, so a radius at an integer can
   truncate differently (60 x 23 cells: 7.0 in float32 -> 7, 6.999999999999998 in float64 -> 6). The boxes here
   do not hit such a size (the targets test would fail if they did).
"""
import copy
import math
import os.path as osp

import pytest
import torch
from mmdet.models.utils import gaussian_radius, gen_gaussian_target
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmkp.models.utils.heatmap import gather_feat
from mmkp.registry import MODELS

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
MMKP_CONFIG = osp.join(REPO, 'configs/centernet/centernet_r18-dcnv2_6xb19-crop512-140e_coco.py')
MMDET_CONFIGS = {True: 'mmdet::centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py',
                 False: 'mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py'}
NUM_CLASSES = 80
SIZE, STRIDE = 128, 4  # input 128 x 128, maps 32 x 32
FEAT = SIZE // STRIDE
MMDET_TARGETS = dict(type='GaussianHeatmapAssigner', keypoints=('center', ), radius_formula='corrected',
                     min_overlap=0.3, sigma_factor=6.0, clip_to=None)
#: mmdet ``CenterNetHead`` branch -> mmkp ``CenterHeatmapHead`` branch list (stack 0)
HEAD_BRANCHES = dict(heatmap_head='heatmap_branches', wh_head='size_branches', offset_head='offset_branches')


def mmdet_to_mmkp_key(key):
    """``bbox_head.{heatmap,wh,offset}_head.I.*`` -> ``bbox_head.{heatmap,size,offset}_branches.0.I.*``."""
    parts = key.split('.')
    if parts[0] == 'bbox_head':
        return '.'.join(['bbox_head', HEAD_BRANCHES[parts[1]], '0'] + parts[2:])
    return key


def build_models(use_dcn):
    """mmdet's CenterNet and mmkp's from their configs, mmdet's (randomised) weights copied into mmkp's."""
    register_all_modules(init_default_scope=False)
    mmdet_cfg = copy.deepcopy(get_config(MMDET_CONFIGS[use_dcn]).model)
    mmdet_cfg.backbone.init_cfg = None  # nothing downloaded
    mmkp_cfg = copy.deepcopy(Config.fromfile(MMKP_CONFIG).model)
    mmkp_cfg.backbone.init_cfg = None
    mmkp_cfg.neck.use_dcn = use_dcn
    mmkp_cfg.bbox_head.loss_heatmap = dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=0.0)
    mmkp_cfg.train_cfg = dict(assigner=MMDET_TARGETS)
    mmkp_cfg.test_cfg = dict(decoder=dict(type='CenterHeatmapDecoder', topk=100, local_maximum_kernel=3,
                                          clip_border=False), max_per_img=100, nms=None)
    assert mmdet_cfg.bbox_head.type == 'CenterNetHead' and mmkp_cfg.bbox_head.type == 'CenterHeatmapHead'
    assert mmdet_cfg.neck.use_dcn == use_dcn
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MODELS.build(mmdet_cfg)
        ours = MODELS.build(mmkp_cfg)
    ref.init_weights()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        # non-trivial BN affine parameters (mmdet's ResNet zero-initialises the last BN of each block) and running
        # statistics of a calibration batch (the statistics of one batch, momentum 1), so that eval mode is checked
        # on maps with structure
        bns = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)
            bn.momentum = 1.0
        ref.train()
        ref._forward(torch.randn(2, 3, SIZE, SIZE, generator=g))
        for bn in bns:
            bn.momentum = 0.1
        # spread-out scores (no ties in the top 100), sizes of a few cells and offsets of order 1 (the init's std
        # 0.001 would make every box a point)
        for head, std, bias in ((ref.bbox_head.heatmap_head, 0.5, -2.19), (ref.bbox_head.wh_head, 0.05, 3.0),
                                (ref.bbox_head.offset_head, 0.05, 0.5)):
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=g) * std)
            head[-1].bias.fill_(bias)
    state = {mmdet_to_mmkp_key(k): v for k, v in ref.state_dict().items()}
    ours_keys = set(ours.state_dict())
    assert set(state) == ours_keys, (sorted(set(state) - ours_keys)[:5], sorted(ours_keys - set(state))[:5])
    ours.load_state_dict(state, strict=True)
    return ref, ours


@pytest.fixture(scope='module', params=[False, True], ids=['plain', 'dcn'])
def models(request):
    return build_models(request.param)


def cell_aligned_gts(num_imgs=2, num_boxes=(7, 5), seed=3):
    """Boxes whose sides are whole cells (multiples of 4 px), corners on a 0.25 px grid, centers in distinct cells.

    Every scaled coordinate is then exact in float32, so mmdet's radius of (h, w) equals mmkp's of (ceil h, ceil w).
    """
    g = torch.Generator().manual_seed(seed)
    gts = []
    for i in range(num_imgs):
        boxes, cells = [], set()
        while len(boxes) < num_boxes[i]:
            w, h = (torch.randint(2, 20, (2, ), generator=g) * STRIDE).tolist()
            x1 = torch.randint(0, (SIZE - w) * 4, (1, ), generator=g).item() / 4
            y1 = torch.randint(0, (SIZE - h) * 4, (1, ), generator=g).item() / 4
            cell = (int((x1 + w / 2) / STRIDE), int((y1 + h / 2) / STRIDE))
            if cell not in cells:
                cells.add(cell)
                boxes.append([x1, y1, x1 + w, y1 + h])
        labels = torch.randint(0, 3, (num_boxes[i], ), generator=g)  # few classes: Gaussians overlap in a plane
        gts.append(InstanceData(bboxes=torch.tensor(boxes), labels=labels))
    return gts


def batch(gts):
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(len(gts), 3, SIZE, SIZE, generator=g)
    samples = []
    for gt in gts:
        s = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
                                        pad_shape=(SIZE, SIZE), border=[0, SIZE, 0, SIZE]))
        s.gt_instances = gt
        samples.append(s)
    return inputs, samples


@pytest.mark.parametrize('train', [True, False])
def test_raw_maps_match(models, train):
    ref, ours = models
    ref.train(train)
    ours.train(train)
    inputs, _ = batch(cell_aligned_gts())
    with torch.no_grad():
        ref_heat, ref_wh, ref_off = ref._forward(inputs)
        our_heat, our_size, our_off = ours._forward(inputs)
    assert ref_heat[0].shape == our_heat[0].shape == (2, NUM_CLASSES, FEAT, FEAT)
    diffs = [(our_heat[0].sigmoid() - ref_heat[0]).abs().max().item(), (our_size[0] - ref_wh[0]).abs().max().item(),
             (our_off[0] - ref_off[0]).abs().max().item()]
    assert max(diffs) <= 1e-5, diffs
    assert ref_wh[0].abs().max() > 1  # non-trivial maps


def test_targets_match(models):
    """Cell-aligned boxes: heatmap, size, offset targets and their weights equal mmdet's ``get_targets``."""
    ref, ours = models
    gts = cell_aligned_gts()
    metas = batch(gts)[1]
    their, avg_factor = ref.bbox_head.get_targets([gt.bboxes for gt in gts], [gt.labels for gt in gts],
                                                  (2, NUM_CLASSES, FEAT, FEAT), (SIZE, SIZE))
    targets = ours.bbox_head.assigner.assign(gts, (FEAT, FEAT), (SIZE, SIZE), NUM_CLASSES,
                                             [s.metainfo for s in metas])
    heat = targets.heatmaps['center']
    assert torch.allclose(heat, their['center_heatmap_target'], rtol=0, atol=1e-6)
    assert torch.equal(heat.eq(1), their['center_heatmap_target'].eq(1))
    assert int(avg_factor) == int(targets.mask.sum()) == 12
    # mmkp's per-object targets (B, M, 2) written into mmdet's dense (B, 2, H, W) layout, real objects only
    dense = {k: torch.zeros(2, 2, FEAT * FEAT) for k in ('wh', 'off', 'weight')}
    for b in range(2):
        keep = targets.mask[b]
        index = targets.indices['center'][b][keep]
        dense['wh'][b][:, index] = targets.sizes[b][keep].T
        dense['off'][b][:, index] = targets.offsets['center'][b][keep].T
        dense['weight'][b][:, index] = 1
    assert torch.equal(dense['weight'].view(2, 2, FEAT, FEAT), their['wh_offset_target_weight'])
    assert torch.equal(dense['wh'].view(2, 2, FEAT, FEAT), their['wh_target'])
    assert torch.allclose(dense['off'].view(2, 2, FEAT, FEAT), their['offset_target'], rtol=0, atol=1e-6)


def test_heatmap_matches_gen_gaussian_target_loop():
    """Boxes of any size: mmkp's heatmap is a loop of mmdet's ``gen_gaussian_target`` with radius
    ``max(0, int(gaussian_radius((ceil h, ceil w), 0.3)))`` (mmdet's own formula on the ceiled cell sizes), the
    original's rounding; mmdet's ``get_targets`` (no ceil) draws a smaller radius for some of these boxes."""
    from mmkp.models.task_modules import GaussianHeatmapAssigner
    g = torch.Generator().manual_seed(5)
    gts = []
    for n in (40, 25):
        wh = 6 + torch.rand(n, 2, generator=g) * 100
        xy = torch.rand(n, 2, generator=g) * (SIZE - wh)
        gts.append(InstanceData(bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, 4, (n, ), generator=g)))
    targets = GaussianHeatmapAssigner(**{k: v for k, v in MMDET_TARGETS.items() if k != 'type'}).assign(
        gts, (FEAT, FEAT), (SIZE, SIZE), 4)
    expected = torch.zeros(2, 4, FEAT, FEAT)
    num_differ = 0
    for i, gt in enumerate(gts):
        for box, label in zip(gt.bboxes.tolist(), gt.labels.tolist()):
            x1, y1, x2, y2 = (v / STRIDE for v in box)
            h, w = y2 - y1, x2 - x1
            radius = max(0, int(gaussian_radius((math.ceil(h), math.ceil(w)), min_overlap=0.3)))
            num_differ += radius != max(0, int(gaussian_radius((h, w), min_overlap=0.3)))
            gen_gaussian_target(expected[i, label], [int((x1 + x2) / 2), int((y1 + y2) / 2)], radius)
    assert expected.eq(1).sum() > 30
    assert torch.allclose(targets.heatmaps['center'], expected, rtol=0, atol=1e-6)
    assert num_differ > 5  # the documented difference from mmdet's get_targets is real for these boxes


def test_losses_match(models):
    ref, ours = models
    ref.train()
    ours.train()
    ref.zero_grad()
    ours.zero_grad()
    gts = cell_aligned_gts()
    inputs, samples = batch(gts)
    ref_losses = ref.loss(inputs, copy.deepcopy(samples))
    our_losses = ours.loss(inputs, copy.deepcopy(samples))
    num = sum(len(gt) for gt in gts)
    factor = 2 * num / (2 * num + 1e-4)  # difference 3 of the module docstring
    assert our_losses['loss_heatmap'].item() == pytest.approx(ref_losses['loss_center_heatmap'].item(), rel=1e-5)
    assert our_losses['loss_size'].item() == pytest.approx(ref_losses['loss_wh'].item() * factor, rel=1e-5)
    assert our_losses['loss_offset'].item() == pytest.approx(ref_losses['loss_offset'].item() * factor, rel=1e-5)
    assert ref_losses['loss_wh'].item() > 0.1 and ref_losses['loss_center_heatmap'].item() > 0.1
    # and the gradients agree, tensor by tensor, relative to the tensor's gradient norm (the L1 losses' factor,
    # 1 - 4e-6, lies below the tolerance; measured: at most 5e-6 relative)
    sum(ref_losses.values()).backward()
    sum(our_losses.values()).backward()
    ref_grads = {mmdet_to_mmkp_key(k): p.grad for k, p in ref.named_parameters()}
    for k, p in ours.named_parameters():
        assert ref_grads[k].norm() > 0, k
        assert (p.grad - ref_grads[k]).norm() <= 1e-4 * ref_grads[k].norm(), k


def decode_metas():
    """An image of 90 x 100 scaled by 0.5 and centred on the 128 canvas (border = [top, bottom, left, right]), and an
    image at its own size with a (0, 0) border."""
    return [
        dict(batch_input_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE), ori_shape=(180, 200), scale_factor=(0.5, 0.5),
             border=[19, 109, 14, 114]),
        dict(batch_input_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0),
             border=[0, SIZE, 0, SIZE]),
    ]


def test_decoded_boxes_match(models):
    ref, ours = models
    g = torch.Generator().manual_seed(0)
    heat = torch.randn(2, NUM_CLASSES, FEAT, FEAT, generator=g) * 2 - 3
    size = torch.rand(2, 2, FEAT, FEAT, generator=g) * 10
    offset = torch.rand(2, 2, FEAT, FEAT, generator=g)
    metas = decode_metas()
    ref_results = ref.bbox_head.predict_by_feat([heat.sigmoid()], [size], [offset], batch_img_metas=metas,
                                                rescale=True)
    our_results = ours.bbox_head.predict_by_feat([heat], [size], [offset], batch_img_metas=metas, rescale=True)
    for r, o in zip(ref_results, our_results):
        assert len(r) == len(o) == 100
        assert torch.allclose(o.bboxes, r.bboxes, rtol=0, atol=1e-4)
        assert torch.allclose(o.scores, r.scores, rtol=0, atol=1e-6) and torch.equal(o.labels, r.labels)
    # the border and the scale factor were applied: the first image's boxes are not those of the second's rule
    assert (ref_results[0].bboxes < 0).any()


def test_full_model_predictions_match(models):
    ref, ours = models
    ref.eval()
    ours.eval()
    inputs, samples = batch(cell_aligned_gts())
    for s, meta in zip(samples, decode_metas()):
        s.set_metainfo(meta)
    with torch.no_grad():
        ref_pred = ref.predict(inputs, copy.deepcopy(samples), rescale=True)
        our_pred = ours.predict(inputs, copy.deepcopy(samples), rescale=True)
    for r, o in zip(ref_pred, our_pred):
        r, o = r.pred_instances, o.pred_instances
        assert len(r) == len(o) == 100
        assert torch.allclose(o.bboxes, r.bboxes, rtol=0, atol=1e-4)
        assert torch.allclose(o.scores, r.scores, rtol=0, atol=1e-6) and torch.equal(o.labels, r.labels)
        assert (r.bboxes[:, 2:] - r.bboxes[:, :2]).min() > 1  # boxes with sizes (not points)
        assert r.scores.unique().numel() > 90  # distinct scores: the order is not decided by ties


def test_gather_matches_transpose_and_gather():
    """mmkp's ``gather_feat`` (used by both the loss and the decoder) against mmdet's ``transpose_and_gather_feat``."""
    from mmdet.models.utils import transpose_and_gather_feat
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 2, FEAT, FEAT, generator=g)
    index = torch.randint(0, FEAT * FEAT, (2, 17), generator=g)
    assert torch.equal(gather_feat(feat, index), transpose_and_gather_feat(feat, index))
