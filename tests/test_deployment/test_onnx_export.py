"""ONNX export (tools/deployment/pytorch2onnx.py, mmkp.deployment): standard-op pools, and per family the exported
graph in onnxruntime against PyTorch.

Pools: :mod:`mmkp.deployment.onnx_ops` against :mod:`mmkp.ops` (the compiled kernels when built) and against a
per-position loop written out here, bit for bit, on inputs with ties; then the same functions exported alone and run
in onnxruntime, with no custom-op domain in the graph.

Families (quick BCCD configs, seeded ``init_weights`` saved to a checkpoint, one BCCD image through the config's
test pipeline and data preprocessor): the tool exports the checkpoint at the preprocessed input's size; the raw maps
onnxruntime returns match the PyTorch model's own head outputs (compiled pools, training code path) within 1e-4;
and :class:`ONNXPostProcessor` on the onnxruntime outputs gives the boxes, scores and labels of the detector's
``predict(rescale=True)`` within 1e-3 (same count, same labels), on a non-empty result.
"""
import os.path as osp
import re
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mmkp.deployment.onnx_ops import onnx_center_pool, onnx_corner_pool, onnx_directional_pool, onnx_pools
from mmkp.ops import center_pool, corner_pool, directional_pool
from tests.conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'deployment'))
import pytorch2onnx  # noqa: E402

QUICK_CONFIGS = {
    'centernet': 'configs/centernet/centernet_r18_1xb8-quick_bccd.py',
    'fcos': 'configs/fcos/fcos_r18_fpn_gn-head_1xb8-quick_bccd.py',
    'cornernet': 'configs/cornernet/cornernet_hourglass-d3w32_1xb8-crop159-quick_bccd.py',
    'cornernet_squeeze':
    'configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze-d3w32_1xb8-crop255-quick_bccd.py',
    'centernet_triplet': 'configs/centernet_triplet/centernet-triplet_hourglass-d3w32_1xb8-crop159-quick_bccd.py',
}
IMAGE = 'BloodImage_00000.jpg'
RAW_TOL = 1e-4
BOX_TOL = 1e-3


def loop_directional_pool(x: torch.Tensor, direction: str) -> torch.Tensor:
    """Per-position reference: out[..., i] = max over the window of i (suffix for top / left, prefix otherwise)."""
    dim = 2 if direction in ('top', 'bottom') else 3
    length = x.shape[dim]
    out = torch.empty_like(x)
    for i in range(length):
        window = range(i, length) if direction in ('top', 'left') else range(0, i + 1)
        out.select(dim, i).copy_(torch.stack([x.select(dim, j) for j in window]).amax(0))
    return out


def tied_map(shape, seed):
    """Random map with many ties (values on a grid of 7 levels) and one -inf-free negative range."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-3, 4, shape, generator=g).float() * 0.5 - 0.25)


@pytest.mark.parametrize('shape', [(2, 3, 7, 13), (1, 2, 16, 1), (1, 1, 1, 9), (2, 4, 33, 64)])
@pytest.mark.parametrize('direction', ['top', 'bottom', 'left', 'right'])
def test_directional_pool_equals_compiled(shape, direction):
    x = tied_map(shape, 0) + 0.01 * torch.randn(shape, generator=torch.Generator().manual_seed(1)).round(decimals=1)
    ours = onnx_directional_pool(x, direction)
    assert torch.equal(ours, directional_pool(x, direction))
    assert torch.equal(ours, loop_directional_pool(x, direction))
    # covering a larger length (dynamic export) changes nothing
    assert torch.equal(onnx_directional_pool(x, direction, min_length=4096), ours)
    assert not torch.equal(ours, x) or x.shape[2 if direction in ('top', 'bottom') else 3] == 1


@pytest.mark.parametrize('corner', ['top_left', 'bottom_right'])
def test_corner_and_center_pool_equal_compiled(corner):
    a, b = torch.randn(2, 3, 11, 17), torch.randn(2, 3, 11, 17)
    assert torch.equal(onnx_corner_pool(a, b, corner), corner_pool(a, b, corner))
    assert torch.equal(onnx_center_pool(a, b), center_pool(a, b))
    col = torch.stack([a[:, :, :, w].amax(2) for w in range(17)], -1)[:, :, None, :]  # (N, C, 1, W)
    row = torch.stack([b[:, :, h, :].amax(2) for h in range(11)], -1)[..., None]  # (N, C, H, 1)
    assert torch.equal(onnx_center_pool(a, b), col + row)


def test_onnx_pools_swaps_and_restores():
    from mmkp.models.layers import pool_modules
    before = (pool_modules.directional_pool, pool_modules.corner_pool, pool_modules.center_pool)
    with onnx_pools():
        assert pool_modules.center_pool is onnx_center_pool
        assert pool_modules.directional_pool is not before[0]
    assert (pool_modules.directional_pool, pool_modules.corner_pool, pool_modules.center_pool) == before


class _Pools(torch.nn.Module):
    def forward(self, a, b):
        outs = [onnx_directional_pool(a, d) for d in ('top', 'bottom', 'left', 'right')]
        return (*outs, onnx_corner_pool(a, b, 'top_left'), onnx_corner_pool(a, b, 'bottom_right'),
                onnx_center_pool(a, b))


def test_pools_in_onnxruntime(tmp_path):
    a, b = tied_map((2, 3, 9, 21), 3), tied_map((2, 3, 9, 21), 4)
    path = str(tmp_path / 'pools.onnx')
    torch.onnx.export(_Pools(), (a, b), path, input_names=['a', 'b'], opset_version=17, dynamo=False)
    proto = onnx.load(path)
    assert {op.domain for op in proto.opset_import} <= {'', 'ai.onnx'}
    assert {node.domain for node in proto.graph.node} <= {'', 'ai.onnx'}
    outs = ort.InferenceSession(path, providers=['CPUExecutionProvider']).run(None, {'a': a.numpy(), 'b': b.numpy()})
    expected = [directional_pool(a, d) for d in ('top', 'bottom', 'left', 'right')]
    expected += [corner_pool(a, b, 'top_left'), corner_pool(a, b, 'bottom_right'), center_pool(a, b)]
    assert len(outs) == 7
    for got, want in zip(outs, expected):
        np.testing.assert_array_equal(got, want.numpy())


# ---------------------------------------------------------------------------------------------------------------
# per family


#: classification-output biases per class (scores about 0.5, 0.38, 0.27 before any decoding instead of the
#: focal-loss prior 0.01-0.1, so that every family returns boxes; distinct per class: no ties between classes)
CLASS_BIAS = (0.0, -0.5, -1.0)
#: (key pattern, value): CenterNet's size bias (4 cells, not about 0); the corner embeddings 0, so that untrained
#: corners pair (as tests/e2e/test_demo.py)
BIAS_OVERRIDES = [(r'^bbox_head\.size_branches\.\d+\.2\.bias$', 4.0),
                  (r'^bbox_head\.(tl|br)_tags\.\d+\.1\.(weight|bias)$', 0.0)]
#: every class channel of a corner heatmap output equal to the first (the class biases then rank the classes the same
#: way for both corners, and pairs agree in class)
CORNER_HEATMAP_WEIGHT = r'^bbox_head\.(tl|br)_heats\.\d+\.1\.weight$'


def _build(config):
    """The quick config's model, seeded ``init_weights``, with the output overrides above, in eval mode."""
    from mmkp.converters.core import build_model_from_config
    torch.manual_seed(0)
    model = build_model_from_config(osp.join(REPO, config))
    model.init_weights()
    state = model.state_dict()
    num_classes = model.bbox_head.num_classes
    class_bias = torch.tensor(CLASS_BIAS[:num_classes])
    changed = 0
    for k, v in state.items():
        if k.startswith('bbox_head.') and k.endswith('.bias') and tuple(v.shape) == (num_classes, ):
            state[k] = class_bias.clone()
            changed += 1
        for pattern, value in BIAS_OVERRIDES:
            if re.search(pattern, k):
                state[k] = torch.full_like(v, value)
        if re.search(CORNER_HEATMAP_WEIGHT, k):
            state[k] = v[:1].expand_as(v).clone()
    assert changed, 'no classification output found'
    model.load_state_dict(state)
    return model.eval()


def _test_batch(model, config, bccd_root):
    from mmcv.transforms import Compose
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(REPO, config))
    steps = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] != 'LoadAnnotations']
    with DefaultScope.overwrite_default_scope('mmdet'):
        data = Compose(steps)(dict(img_path=osp.join(bccd_root, 'images', IMAGE), img_id=0))
        return model.data_preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)


def _reference_maps(model, family, inputs):
    """The PyTorch head's own outputs (compiled pools), named as the graph outputs."""
    with torch.no_grad():
        x = model.extract_feat(inputs)
        head = model.bbox_head
        if family == 'centernet':
            heat, size, off = head(x)
            return dict(heatmap=heat[-1], size=size[-1], offset=off[-1])
        if family == 'fcos':
            maps = {}
            for name, per_level in zip(('cls_score', 'bbox_pred', 'centerness'), head(x)):
                maps.update({f'{name}_{i}': m for i, m in enumerate(per_level)})
            return maps
        out = head.forward(x)
        names = dict(top_left='tl', bottom_right='br', center='ct')
        return {f'{names[kp]}_{branch}': out[kp][branch][-1] for kp in out for branch in out[kp]}


@pytest.mark.parametrize('name', list(QUICK_CONFIGS))
def test_export_matches_pytorch(name, tmp_path, bccd_root):
    from mmkp.deployment import ONNXPostProcessor, detect_family
    config = QUICK_CONFIGS[name]
    model = _build(config)
    family = detect_family(model)
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    batch = _test_batch(model, config, bccd_root)
    inputs, samples = batch['inputs'], batch['data_samples']
    out = str(tmp_path / 'model.onnx')
    height, width = inputs.shape[-2:]
    assert pytorch2onnx.main([osp.join(REPO, config), ckpt, '--out', out, '--shape', str(height), str(width)]) == 0
    proto = onnx.load(out)
    assert {node.domain for node in proto.graph.node} <= {'', 'ai.onnx'}, 'custom op in the graph'
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta['mmkp_family'] == family
    names = meta['mmkp_outputs'].split(',')

    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    outputs = dict(zip(names, sess.run(None, {'input': inputs.numpy()})))
    ref = _reference_maps(model, family, inputs)
    assert set(ref) <= set(names) and len(ref) >= 3
    for key, value in ref.items():
        assert outputs[key].shape == tuple(value.shape), key
        diff = float(np.abs(outputs[key].astype(np.float64) - value.double().numpy()).max())
        assert diff <= RAW_TOL, f'{name} {key}: max abs diff {diff}'

    with torch.no_grad():
        expected = model.predict(inputs, samples, rescale=True)[0].pred_instances
    got = ONNXPostProcessor(osp.join(REPO, config))(outputs, [s.metainfo for s in samples])[0]
    assert len(expected) > 0, f'{name}: the PyTorch detector found nothing, nothing is compared'
    assert len(got) == len(expected), f'{name}: {len(got)} boxes after post-processing, PyTorch {len(expected)}'
    order_e = torch.argsort(expected.scores, descending=True, stable=True)
    order_g = torch.argsort(got.scores, descending=True, stable=True)
    torch.testing.assert_close(got.scores[order_g], expected.scores[order_e], atol=BOX_TOL, rtol=0)
    assert torch.equal(got.labels[order_g], expected.labels[order_e])
    torch.testing.assert_close(got.bboxes[order_g], expected.bboxes[order_e], atol=BOX_TOL, rtol=0)
