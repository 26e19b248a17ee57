"""Whole detectors on a CUDA device against the same detectors on the CPU (skipped without a GPU, tests/conftest.py).

Every family's quick BCCD config is built once with seeded weights, converted to float64 (so that the comparison
is not blurred by TF32 / reduction-order rounding, and ranking ties between the two devices are improbable) and
copied to the GPU. On the same random batch (2 images of 128 x 160 px, 3 boxes each) both copies must give

* the same raw maps (``model._forward``: backbone, neck, the compiled corner / cascade / center pools, heads),
* the same loss terms (targets drawn by the assigners on the maps' device, focal / pull-push / offset / IoU losses)
  and the same gradient of every parameter,
* the same detections from ``model.predict`` (decoding, pairing, center check, soft-NMS), except FCOS, whose
  NMS is mmcv's compiled ``nms``: its raw maps and losses are compared, its boxes are not (see the note there).

CornerNet-Saccade's test procedure (views, attention, zoomed crops cut by ``saccade_crop`` in chunks of
``crop_batch`` on the input's device) is compared whole, and a batch of two images must equal two one-image runs on
the GPU as it does on the CPU (issue 10, item 4).
"""
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmkp.converters.core import build_model_from_config
from tests.conftest import QUICK_CONFIGS, REPO

pytestmark = pytest.mark.cuda

#: every family's quick config, and the DLA-34 CenterNet next to the ResNet-18 one
CONFIGS = dict(QUICK_CONFIGS, **{'centernet-dla34': 'configs/centernet/centernet_dla34_1xb8-quick_bccd.py'})
H, W = 128, 160
BOXES = [torch.tensor([[10., 12., 60., 70.], [70., 20., 150., 100.], [30., 80., 90., 125.]]),
         torch.tensor([[5., 5., 45., 50.], [50., 40., 120., 110.], [100., 10., 155., 60.]])]
LABELS = [torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1])]
TOL = dict(rtol=1e-7, atol=1e-9)


#: test settings under which untrained weights detect something (embeddings of random weights are far apart, the
#: attention and coarse scores stay below the paper thresholds)
UNTRAINED_TEST_CFG = {
    'centernet-triplet': {'model.test_cfg.decoder.ae_threshold': 100.0, 'model.test_cfg.decoder.center_topk': 200},
    'cornernet-saccade': {
        'model.test_cfg.decoder.ae_threshold': 100.0, 'model.test_cfg.decoder.reject_border': False,
        'model.test_cfg.saccade.att_threshold': 0.05, 'model.test_cfg.saccade.coarse_threshold': -0.5,
        'model.test_cfg.saccade.k_max': 4, 'model.test_cfg.saccade.crop_batch': 3},
}


def build_pair(name):
    """The family's quick-config detector (seeded, float64) on the CPU and a copy on the GPU."""
    torch.manual_seed(0)
    cfg_options = UNTRAINED_TEST_CFG.get(name)
    cpu = build_model_from_config(osp.join(REPO, CONFIGS[name]), cfg_options=cfg_options)
    cpu.init_weights()
    # batch-norm statistics away from (0, 1), so that eval mode is not the identity
    for m in cpu.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    if name == 'cornernet-saccade':
        # spread the untrained corner scores (the default init gives near-equal ones: no pair survives decoding)
        with torch.no_grad():
            for heat in list(cpu.bbox_head.tl_heats) + list(cpu.bbox_head.br_heats):
                heat[-1].weight.normal_(0, 2.0)
    cpu = cpu.double()
    gpu = build_model_from_config(osp.join(REPO, CONFIGS[name]), cfg_options=cfg_options).double()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


def batch(device, with_gt=True):
    """Two normalised random images (2, 3, H, W) float64 and their data samples (metas, boxes in input px)."""
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 3, H, W, generator=g, dtype=torch.float64).to(device)
    samples = []
    for boxes, labels in zip(BOXES, LABELS):
        s = DetDataSample(metainfo=dict(batch_input_shape=(H, W), img_shape=(H, W), pad_shape=(H, W),
                                        ori_shape=(H, W), scale_factor=(1.0, 1.0)))
        if with_gt:
            s.gt_instances = InstanceData(bboxes=boxes.double().to(device), labels=labels.to(device))
            s.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4, dtype=torch.float64, device=device),
                                               labels=torch.zeros(0, dtype=torch.long, device=device))
        samples.append(s)
    return inputs, samples


def flat(outs):
    """Every tensor of a nested output structure, in order."""
    if isinstance(outs, torch.Tensor):
        return [outs]
    if isinstance(outs, dict):
        return [t for v in outs.values() for t in flat(v)]
    if isinstance(outs, (list, tuple)):
        return [t for v in outs for t in flat(v)]
    return []


@pytest.mark.parametrize('name', list(CONFIGS))
def test_raw_maps_losses_and_gradients_match_the_cpu(name):
    cpu, gpu = build_pair(name)
    for model in (cpu, gpu):
        model.eval()
    with torch.no_grad():
        maps_cpu = flat(cpu._forward(*batch('cpu')))
        maps_gpu = flat(gpu._forward(*batch('cuda')))
    assert len(maps_cpu) == len(maps_gpu) > 0
    for a, b in zip(maps_cpu, maps_gpu):
        assert b.device.type == 'cuda'
        torch.testing.assert_close(b.cpu(), a, **TOL)

    losses, grads = [], []
    for model, device in ((cpu, 'cpu'), (gpu, 'cuda')):
        model.train()
        model.zero_grad()
        inputs, samples = batch(device)
        terms = model.loss(inputs, samples)
        total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v) for v in terms.values())
        total.backward()
        losses.append({k: torch.stack([x.sum() for x in flat(v)]).sum().item() for k, v in terms.items()})
        grads.append({n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None})
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        assert losses[1][key] == pytest.approx(losses[0][key], rel=1e-7, abs=1e-9), key
    assert any(v > 0 for v in losses[0].values())
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-6, atol=1e-8, msg=n)


@pytest.mark.parametrize('name', [n for n in CONFIGS if n not in ('fcos', 'cornernet-saccade')])
def test_detections_match_the_cpu(name):
    # FCOS is left out: its NMS is mmcv's compiled nms, whose CUDA kernel is not part of the mmkp code under test
    # (and the device machine's mmcv may be built without CUDA ops); its maps and losses are compared above.
    cpu, gpu = build_pair(name)
    results = []
    for model, device in ((cpu, 'cpu'), (gpu, 'cuda')):
        model.eval()
        with torch.no_grad():
            results.append([s.pred_instances for s in model.predict(*batch(device, with_gt=False), rescale=False)])
    for a, b in zip(*results):
        assert b.bboxes.device.type == 'cuda'
        assert len(a) == len(b) > 0
        order_a, order_b = a.scores.argsort(descending=True), b.scores.cpu().argsort(descending=True)
        torch.testing.assert_close(b.scores.cpu()[order_b], a.scores[order_a], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.bboxes.cpu()[order_b], a.bboxes[order_a], rtol=1e-5, atol=1e-4)
        assert torch.equal(b.labels.cpu()[order_b], a.labels[order_a])


def saccade_batch(device):
    images = [torch.rand(3, 200, 300, generator=torch.Generator().manual_seed(2)) * 255,
              torch.rand(3, 260, 180, generator=torch.Generator().manual_seed(3)) * 255]
    samples = [DetDataSample(metainfo=dict(img_shape=tuple(im.shape[1:]), ori_shape=tuple(im.shape[1:]),
                                           scale_factor=(1., 1.))) for im in images]
    return [im.to(device) for im in images], samples


def test_saccade_procedure_matches_the_cpu_and_batches_on_cuda():
    cpu, gpu = build_pair('cornernet-saccade')  # k_max 4 crops in chunks of 3 (UNTRAINED_TEST_CFG)
    for model in (cpu, gpu):
        model.eval()
    outs = []
    for model, device in ((cpu, 'cpu'), (gpu, 'cuda')):
        images, samples = saccade_batch(device)
        with torch.no_grad():
            data = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
            outs.append(model.saccade_predict(data['inputs'].double(), [s.metainfo for s in data['data_samples']]))
    for a, b in zip(*outs):
        assert b.bboxes.device.type == 'cuda' and len(a) == len(b) > 0
        torch.testing.assert_close(b.bboxes.cpu(), a.bboxes, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(b.scores.cpu(), a.scores, rtol=1e-5, atol=1e-6)
        assert torch.equal(b.labels.cpu(), a.labels)

    images, samples = saccade_batch('cuda')
    with torch.no_grad():
        data = gpu.data_preprocessor(dict(inputs=images, data_samples=samples), False)
        together = gpu.saccade_predict(data['inputs'].double(), [s.metainfo for s in data['data_samples']])
        alone = []
        for im, s in zip(images, samples):
            one = gpu.data_preprocessor(dict(inputs=[im], data_samples=[s]), False)
            alone += gpu.saccade_predict(one['inputs'].double(), [one['data_samples'][0].metainfo])
    for a, b in zip(together, alone):
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.bboxes, b.bboxes, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-5, atol=1e-6)
        assert torch.equal(a.labels, b.labels)
