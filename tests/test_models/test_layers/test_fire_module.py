"""FireModule: layout of the original fire module and its skip rule, checked by hand on tiny inputs."""
import pytest
import torch
from torch import nn

from mmkp.models.layers import FireModule
from mmkp.registry import MODELS


def _set_weights(fire, squeeze):
    """Identity norms; squeeze weights ``squeeze``; expand 1x1 = 2 (x2); 3x3 = ones (sum of the 3x3 window)."""
    fire.eval()
    for norm in (fire.norm1, fire.norm2):
        norm.eps = 0.0
        nn.init.ones_(norm.weight)
        nn.init.zeros_(norm.bias)
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0)
    with torch.no_grad():
        fire.conv1.weight.copy_(torch.tensor(squeeze, dtype=torch.float32).view(1, -1, 1, 1))
        fire.conv_1x1.weight.fill_(2.0)
        fire.conv_3x3.weight.fill_(1.0)


X = torch.tensor([[[[1., -2.], [3., 0.]], [[0., 1.], [-1., 2.]]]])  # (1, 2, 2, 2)


def test_skip_added_when_stride_1_and_channels_kept():
    fire = FireModule(2, 2)
    assert fire.with_skip
    _set_weights(fire, [1., 1.])
    # s = x0 + x1 = [[1, -1], [2, 2]]; e1 = 2 s = [[2, -2], [4, 4]];
    # e3 = 3x3 box sum with zero padding: every window of a 2x2 map holds all of it, 4 everywhere
    # out = ReLU(cat[e1, e3] + x)
    expected = torch.tensor([[[[3., 0.], [7., 4.]], [[4., 5.], [3., 6.]]]])
    with torch.no_grad():
        assert torch.equal(fire(X), expected)


def test_no_skip_with_stride_2():
    fire = FireModule(2, 2, stride=2)
    assert not fire.with_skip
    _set_weights(fire, [1., 1.])
    # both expand convs sample position (0, 0): e1 = 2 s[0, 0] = 2; e3 = window rows/cols -1..1 = 1 - 1 + 2 + 2 = 4
    # no residual although the channels match: out = ReLU([2, 4])
    with torch.no_grad():
        out = fire(X)
    assert torch.equal(out, torch.tensor([[[[2.]], [[4.]]]]))


def test_no_skip_and_no_projection_when_channels_change():
    fire = FireModule(3, 2)
    assert not fire.with_skip
    _set_weights(fire, [1., 1., 0.])
    x = torch.cat([X, torch.full((1, 1, 2, 2), 100.)], dim=1)  # third channel ignored by the squeeze weights
    # same s as above, out = ReLU(cat[e1, e3]) with no residual of any kind
    expected = torch.tensor([[[[2., 0.], [4., 4.]], [[4., 4.], [4., 4.]]]])
    with torch.no_grad():
        assert torch.equal(fire(x), expected)
    assert {name for name, m in fire.named_modules() if isinstance(m, nn.Conv2d)} == {'conv1', 'conv_1x1', 'conv_3x3'}


def test_squeeze_has_no_relu():
    fire = FireModule(2, 2)
    _set_weights(fire, [1., 1.])
    with torch.no_grad():
        fire.conv_1x1.weight.fill_(-1.0)  # e1 = -s: positive only where s < 0, which a ReLU on s would zero
        fire.conv_3x3.weight.zero_()
        out = fire(torch.tensor([[[[-1.]], [[-1.]]]]))  # s = -2 -> e1 = 2 (a ReLU on s would give 0)
    assert torch.equal(out, torch.tensor([[[[1.]], [[0.]]]]))  # ReLU([2 - 1, 0 - 1]); with a ReLU on s: [0, 0]


def test_layout_matches_the_original():
    fire = FireModule(256, 384, stride=2)
    shapes = {k: tuple(v.shape) for k, v in fire.state_dict().items() if not k.endswith('num_batches_tracked')}
    assert shapes == {
        'conv1.weight': (192, 256, 1, 1),
        'bn1.weight': (192, ), 'bn1.bias': (192, ), 'bn1.running_mean': (192, ), 'bn1.running_var': (192, ),
        'conv_1x1.weight': (192, 192, 1, 1),
        'conv_3x3.weight': (192, 1, 3, 3),  # depth-wise
        'bn2.weight': (384, ), 'bn2.bias': (384, ), 'bn2.running_mean': (384, ), 'bn2.running_var': (384, ),
    }
    assert fire.conv_3x3.groups == 192 and fire.conv_3x3.stride == (2, 2) and fire.conv_1x1.stride == (2, 2)
    assert fire.conv1.stride == (1, 1)
    assert all(m.bias is None for m in fire.modules() if isinstance(m, nn.Conv2d))
    assert fire(torch.rand(2, 256, 7, 7)).shape == (2, 384, 4, 4)


def test_built_from_config_with_another_norm():
    fire = MODELS.build(dict(type='FireModule', in_channels=8, out_channels=8, norm_cfg=dict(type='GN', num_groups=2)))
    assert isinstance(fire, FireModule) and isinstance(fire.norm2, nn.GroupNorm)
    assert fire.norm1_name == 'gn1'
    assert fire(torch.rand(1, 8, 5, 5)).shape == (1, 8, 5, 5)


@pytest.mark.parametrize('kwargs, match', [
    (dict(in_channels=4, out_channels=5), 'even'),
    (dict(in_channels=4, out_channels=6, squeeze_ratio=4), 'divisible'),
    (dict(in_channels=4, out_channels=8, squeeze_ratio=1), 'must divide'),
    (dict(in_channels=4, out_channels=8, stride=0), 'stride'),
    (dict(in_channels=0, out_channels=8), 'positive'),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FireModule(**kwargs)
