"""The fine-tuning configs load converted COCO weights, re-initialise the class heatmaps and train on BCCD.

For each ``*_finetune_custom.py`` config a synthetic "converted COCO" checkpoint is written: the model of the
released-weights config it derives from (80 classes) with seeded random weights, saved as ``{'state_dict': ...}``
like the converters write. The fine-tune config (3 BCCD classes) then runs 2 iterations through mmengine's Runner
(reduced as ``tests/e2e/test_all_configs.py`` reduces the big configs: batch 2, no workers, 255 crops for CornerNet).

Checked on the model state taken at ``before_train`` (after ``load_or_resume``, before any step):
- the tensors that were not loaded are exactly the last conv of every heatmap branch (weight and bias), found by
  walking the head's modules, not by shape: 2 for CenterNet, 8 for CornerNet (2 corners x 2 stacks);
- every other tensor equals the checkpoint's exactly (``torch.equal``);
- the heatmap outputs have 3 output channels and bias -2.19 (the head's ``heatmap_bias``) everywhere, and their
  weights are not the first 3 rows of the checkpoint's (whose biases are drawn in [0, 1), far from -2.19);
- both iterations log finite losses.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from tests.conftest import REPO
from tests.e2e.test_all_configs import smoke_config, train_history

HEATMAP_BIAS = -2.19
NUM_CLASSES = 3  # BCCD

CASES = {
    'centernet': dict(
        config='configs/centernet/centernet_r18-dcnv2_finetune_custom.py',
        released='configs/centernet/centernet_r18-dcnv2_released_coco.py',
        options={
            # 512 crops -> 256 for the CPU run (the network is unchanged)
            'train_dataloader.dataset.pipeline.2.crop_size': (256, 256),
            'train_dataloader.dataset.pipeline.3.scale': (256, 256),
        },
        num_heat_layers=1),
    'cornernet': dict(
        config='configs/cornernet/cornernet_hourglass104_finetune_custom.py',
        released='configs/cornernet/cornernet_hourglass104_released-500k_coco.py',
        options={
            # 511 crops -> 255 for the CPU run (Hourglass-104 unchanged)
            'train_dataloader.dataset.pipeline.2.crop_size': (255, 255),
            'train_dataloader.dataset.pipeline.3.scale': (255, 255),
        },
        num_heat_layers=4),  # top-left and bottom-right, 2 stacks
}


def heatmap_output_layers(model):
    """{state-dict prefix: module} of the last layer of every heatmap branch of the model's head.

    CenterHeatmapHead keeps its branches in ``heatmap_branches``; CornerPoolHead in one ModuleList per keypoint,
    ``tl_heats`` / ``br_heats`` (its ``_module_name(keypoint, 'heatmap')``, as its ``init_weights`` finds them).
    Each branch is a Sequential whose last layer is the 1x1 output conv.
    """
    head = model.bbox_head
    if hasattr(head, 'heatmap_branches'):
        branch_lists = [head.heatmap_branches]
    else:
        branch_lists = [getattr(head, head._module_name(keypoint, 'heatmap')) for keypoint in head.keypoints]
    last_layers = {id(branch[-1]) for branches in branch_lists for branch in branches}
    return {name: module for name, module in model.named_modules() if id(module) in last_layers}


def write_coco_checkpoint(released_config, path, seed=0):
    """A released-config model (80 classes) with seeded random weights, saved as {'state_dict': ...}.

    Floating tensors: the constructed model's weights plus N(0, 0.01) noise (so that no tensor equals any init), BN
    running variances in [0.5, 1.5), heatmap output biases in [0, 1); integer buffers as constructed.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import mmkp  # noqa: F401  (registers mmkp's modules)
    register_all_modules()
    cfg = Config.fromfile(osp.join(REPO, released_config))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)  # PyTorch's construction-time init (init_weights is not needed for this)
    assert model.bbox_head.num_classes == 80
    heat_biases = {f'{name}.bias' for name in heatmap_output_layers(model)}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value.clone()
        elif key.endswith('running_var'):
            state[key] = 0.5 + torch.rand(value.shape, generator=generator)
        elif key in heat_biases:
            state[key] = torch.rand(value.shape, generator=generator)
        else:
            state[key] = value + 0.01 * torch.randn(value.shape, generator=generator)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return state


class _StateBeforeTrain(Hook):
    """The model state right after loading, before the first training step."""

    def __init__(self):
        self.state = None
        self.heat_layers = None

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.heat_layers = list(heatmap_output_layers(model))


@pytest.mark.e2e
@pytest.mark.parametrize('family', sorted(CASES))
def test_finetune_loads_coco_weights_and_reinitialises_heatmaps(family, tmp_path, bccd_root):
    from mmengine.runner import Runner
    case = CASES[family]
    ckpt_path = str(tmp_path / 'coco_converted.pth')
    coco_state = write_coco_checkpoint(case['released'], ckpt_path)

    # the recipe names a checkpoint (the every-config test's overrides drop it: no real one on this machine)
    assert Config.fromfile(osp.join(REPO, case['config'])).load_from, f'{case["config"]}: no load_from'
    cfg = smoke_config(osp.join(REPO, case['config']), tmp_path / 'work')
    cfg.merge_from_dict(case['options'])
    cfg.load_from = ckpt_path
    cfg.resume = False
    for split in ('train', 'val', 'test'):
        assert 'bccd' in cfg[f'{split}_dataloader'].dataset.data_root
        assert tuple(cfg[f'{split}_dataloader'].dataset.metainfo['classes']) == ('RBC', 'WBC', 'Platelets')
    assert cfg.model.bbox_head.num_classes == NUM_CLASSES
    assert cfg.val_evaluator.type == 'CheckedCocoMetric' and cfg.val_evaluator.ann_file.endswith('instances_val.json')

    runner = Runner.from_cfg(cfg)
    probe = _StateBeforeTrain()
    runner.register_hook(probe, priority='HIGHEST')
    runner.train()
    assert runner.iter == 2

    state = probe.state
    assert set(state) == set(coco_state)
    heat_keys = {f'{name}.{kind}' for name in probe.heat_layers for kind in ('weight', 'bias')}
    assert len(probe.heat_layers) == case['num_heat_layers'], probe.heat_layers

    # every tensor other than the heatmap outputs was loaded exactly
    not_loaded = {key for key in state if not (state[key].shape == coco_state[key].shape
                                               and torch.equal(state[key], coco_state[key]))}
    assert not_loaded == heat_keys, sorted(not_loaded ^ heat_keys)

    # the heatmap outputs: the new class count, the head's own init
    for name in probe.heat_layers:
        weight, bias = state[f'{name}.weight'], state[f'{name}.bias']
        assert weight.shape[0] == NUM_CLASSES and coco_state[f'{name}.weight'].shape[0] == 80
        assert bias.shape == (NUM_CLASSES, )
        assert torch.equal(bias, torch.full_like(bias, HEATMAP_BIAS)), (name, bias)
        assert not torch.allclose(weight, coco_state[f'{name}.weight'][:NUM_CLASSES]), name
        assert torch.isfinite(weight).all() and weight.abs().sum() > 0, name

    # two finite training steps
    history = train_history(runner)
    assert 'loss' in history, history
    for name, values in history.items():
        assert len(values) == 2 and all(math.isfinite(v) for v in values), (name, history)
