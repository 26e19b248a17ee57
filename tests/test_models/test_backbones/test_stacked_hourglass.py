"""StackedHourglassNet (CenterNet-52's single-stack Hourglass) and the keypoint-triplet models of the COCO configs
against the released CenterNet-52 / CenterNet-104 checkpoints (Duankaiwen/CenterNet@3ad3a10 ``models/CenterNet-52.py``,
``models/CenterNet-104.py``): parameter counts, tensor names and shapes."""
import pytest
import torch
from mmdet.models import HourglassNet
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmkp.models.backbones import StackedHourglassNet
from mmkp.registry import MODELS

register_all_modules(init_default_scope=False)

SMALL = dict(downsample_times=2, stage_channels=(16, 16, 24), stage_blocks=(1, 1, 2), feat_channel=16)
CONFIGS = {
    'centernet_duan_centernet52': 'configs/centernet_triplet/centernet-triplet_hourglass52_8xb6-480k_coco.py',
    'centernet_duan_centernet104': 'configs/centernet_triplet/centernet-triplet_hourglass104_8xb6-480k_coco.py',
}


def test_one_stack_drops_the_unused_inter_residual():
    mmdet_net, ours = HourglassNet(num_stacks=1, **SMALL), StackedHourglassNet(num_stacks=1, **SMALL)
    extra = set(mmdet_net.state_dict()) - set(ours.state_dict())
    assert extra and all(k.startswith('inters.0.') for k in extra)  # mmdet's ResLayer always builds one block
    assert not set(ours.state_dict()) - set(mmdet_net.state_dict())
    # the same network otherwise: same outputs with the shared weights
    ours.load_state_dict({k: v for k, v in mmdet_net.state_dict().items() if k not in extra})
    x = torch.randn(1, 3, 64, 64)
    mmdet_net.eval(), ours.eval()
    with torch.no_grad():
        assert torch.equal(mmdet_net(x)[0], ours(x)[0])
    # two stacks: mmdet's HourglassNet unchanged
    two = StackedHourglassNet(num_stacks=2, **SMALL)
    assert list(two.state_dict()) == list(HourglassNet(num_stacks=2, **SMALL).state_dict())


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_triplet_models_have_the_released_parameters(name, original_checkpoint, param_count):
    ckpt = original_checkpoint(name)
    cfg = Config.fromfile(CONFIGS[name])
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    ours = sum(p.numel() for p in model.parameters())
    expected = {'centernet_duan_centernet52': 104_844_152, 'centernet_duan_centernet104': 210_062_960}[name]
    assert ckpt['num_params'] == param_count(ckpt['state_dict']) == expected
    assert ours == expected
    assert len(model.state_dict()) == ckpt['num_tensors'] == len(ckpt['state_dict'])
    # the same multiset of shapes (names are mapped by tools/model_converters/centernet_triplet_to_mmkp.py)
    shapes = sorted(tuple(v.shape) for v in model.state_dict().values())
    assert shapes == sorted(tuple(s) for s in ckpt['state_dict'].values())
