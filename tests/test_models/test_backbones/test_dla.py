"""DLA-34 (CenterNet backbone): structure, released-checkpoint keys, pretrained loading, shapes, gradients."""
import re

import pytest
import torch
import torch.nn.functional as F

from mmkp.models.backbones import DLA
from mmkp.models.backbones.dla import ORIGINAL_KEY_RULES, DLABasicBlock, DLATree
from mmkp.registry import MODELS

DLA_CKPT = 'centernet_zhou_ctdet_coco_dla_2x'
STRIDES = (1, 2, 4, 8, 16, 32)
CHANNELS = (16, 32, 64, 128, 256, 512)
#: the trees with levels > 1 whose ``project`` output the original discards
DEAD_PROJECTS = ('level3.project.', 'level4.project.')


def _first_match(key, rules):
    for pattern, repl in rules:
        if re.search(pattern, key):
            return True, None if repl is None else re.sub(pattern, repl, key, count=1)
    return False, key


def test_registered_and_built_from_config():
    model = MODELS.build(dict(type='DLA', depth=34))
    assert type(model) is DLA and MODELS.get('DLA') is DLA
    assert model.levels == (1, 1, 1, 2, 2, 1) and model.channels == CHANNELS


@pytest.mark.parametrize('depth', [18, 60, '34'])
def test_unsupported_depth_is_a_value_error_naming_it(depth):
    with pytest.raises(ValueError, match=f'depth {depth!r}.*supported: \\[34\\]'):
        DLA(depth=depth)


@pytest.mark.parametrize('out_indices', [(), (0, 6), (-1, )])
def test_bad_out_indices(out_indices):
    with pytest.raises(ValueError, match='out_indices'):
        DLA(out_indices=out_indices)


def test_tree_structure_of_dla34():
    """Basic-block leaves, roots over (tree2, tree1, *children) with the original's root widths, level roots."""
    model = DLA()
    assert [model.get_submodule(f'level{i}').level_root for i in range(2, 6)] == [False, True, True, True]
    assert [model.get_submodule(f'level{i}').levels for i in range(2, 6)] == [1, 2, 2, 1]
    roots = {name: m.conv.in_channels for name, m in model.named_modules() if name.endswith('root')}
    assert roots == {
        'level2.root': 128, 'level3.tree1.root': 256, 'level3.tree2.root': 448, 'level4.tree1.root': 512,
        'level4.tree2.root': 896, 'level5.root': 1280}
    assert all(not m.residual for name, m in model.named_modules() if name.endswith('root'))
    leaves = [m for m in model.modules() if isinstance(m, DLABasicBlock)]
    assert len(leaves) == 2 + 4 + 4 + 2
    assert all(m.conv1.bias is None and m.conv2.bias is None for m in leaves)


def test_released_backbone_keys_map_one_to_one(original_checkpoint):
    """Every ``base.*`` key of the released file but ``base.fc`` lands on a DLA tensor of its shape, and back."""
    shapes = original_checkpoint(DLA_CKPT)['state_dict']
    ours = {f'backbone.{k}': tuple(v.shape) for k, v in DLA().state_dict().items()}
    hit, dropped = {}, []
    for key, shape in shapes.items():
        if not key.startswith('base.'):
            continue
        matched, target = _first_match(key, ORIGINAL_KEY_RULES)
        assert matched, key
        if target is None:
            dropped.append(key)
            continue
        assert target in ours, f'{key} -> {target}: no such tensor'
        assert ours[target] == tuple(shape), f'{key} {shape} -> {target} {ours[target]}'
        assert target not in hit, f'{key} and {hit[target]} both map to {target}'
        hit[target] = key
    assert dropped == ['base.fc.weight', 'base.fc.bias']
    assert set(hit) == set(ours)
    assert len(ours) == sum(k.startswith('base.') for k in shapes) - 2 == 234  # 39 convs, 39 BN x 5 tensors


def test_parameter_count_equals_the_released_backbone(original_checkpoint, param_count):
    ckpt = original_checkpoint(DLA_CKPT)
    shapes = ckpt['state_dict']
    assert param_count(shapes) == ckpt['num_params'] == 20_188_892
    released = param_count(shapes, ('base.', )) - param_count(shapes, ('base.fc.', ))
    ours = sum(p.numel() for p in DLA().parameters())
    assert ours == released == 15_270_832


def test_imagenet_layout_loads_with_pretrained_init_cfg(original_checkpoint, tmp_path):
    """Synthetic files with the original names and shapes fill every parameter and buffer through ``init_cfg``:
    the ImageNet layout (the released ``base.*`` names less ``base.``, ``fc.*`` included: the original loads that
    file strictly into the same module tree) and the released file itself (``state_dict``, ``prefix='base.'``)."""
    shapes = original_checkpoint(DLA_CKPT)['state_dict']
    gen = torch.Generator().manual_seed(0)
    imagenet = {}
    for key, shape in shapes.items():
        if key.startswith('base.'):
            imagenet[key[len('base.'):]] = (torch.randint(0, 9, shape, generator=gen) if key.endswith(
                'num_batches_tracked') else torch.randn(shape, generator=gen))
    torch.save(imagenet, tmp_path / 'dla34-imagenet.pth')
    released = {'epoch': 230, 'state_dict': {f'base.{k}': v for k, v in imagenet.items()}}
    released['state_dict']['dla_up.ida_0.up_1.weight'] = torch.zeros(256, 1, 4, 4)
    torch.save(released, tmp_path / 'ctdet.pth')
    for cfg in (dict(type='Pretrained', checkpoint=str(tmp_path / 'dla34-imagenet.pth')),
                dict(type='Pretrained', checkpoint=str(tmp_path / 'ctdet.pth'), prefix='base.')):
        model = DLA(init_cfg=cfg)
        model.init_weights()
        loaded = model.state_dict()
        assert set(loaded) == set(imagenet) - {'fc.weight', 'fc.bias'}
        for k, v in loaded.items():
            assert torch.equal(v, imagenet[k]), (cfg, k)


def test_shapes_strides_and_rounding():
    model = DLA().eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, 128, 128))
        assert [tuple(f.shape) for f in feats] == [(1, c, 128 // s, 128 // s) for c, s in zip(CHANNELS, STRIDES)]
        assert all((f >= 0).all() for f in feats)  # every level ends in a ReLU
        odd = model(torch.rand(1, 3, 95, 63))  # 32 k - 1: the stride-2 conv of level1 rounds up to 16 k
        assert [tuple(f.shape[-2:]) for f in odd] == [(95, 63), (48, 32), (24, 16), (12, 8), (6, 4), (3, 2)]
        for size in ((100, 128), (128, 75)):  # a tree would meet an odd size: max-pool and strided conv disagree
            with pytest.raises(ValueError, match=f'{size[0]} x {size[1]} not supported.*multiples of 32'):
                model(torch.rand(1, 3, *size))
    only = DLA(out_indices=(2, 5)).eval()
    only.load_state_dict(model.state_dict())
    with torch.no_grad():
        picked = only(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in picked] == [(1, 64, 16, 16), (1, 512, 2, 2)]


def test_tree_forward_follows_the_original_aggregation():
    """level3 (2 levels, level root) computed by hand from its parts:

    bottom = maxpool(x); t1: x1 = block(x, project(maxpool(x))), x2 = block(x1), y1 = root(x2, x1);
    t2: z1 = block(y1), z2 = block(z1), out = root(z2, z1, bottom, y1).
    """
    torch.manual_seed(0)
    tree = DLATree(2, 8, 12, stride=2, level_root=True).eval()
    for m in tree.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 16, 16)

    def block(b, inp, residual):
        out = F.relu(b.bn1(b.conv1(inp)))
        return F.relu(b.bn2(b.conv2(out)) + residual)

    def root(r, *children):
        return F.relu(r.bn(r.conv(torch.cat(children, 1))))

    with torch.no_grad():
        bottom = F.max_pool2d(x, 2)
        t1, t2 = tree.tree1, tree.tree2
        x1 = block(t1.tree1, x, t1.project(F.max_pool2d(x, 2)))
        y1 = root(t1.root, block(t1.tree2, x1, x1), x1)
        z1 = block(t2.tree1, y1, y1)
        expected = root(t2.root, block(t2.tree2, z1, z1), z1, bottom, y1)
        got = tree(x)
    assert got.shape == (2, 12, 8, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert tree.project is not None and not any(p.requires_grad for p in tree.project.parameters())


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    model = DLA().train()
    feats = model(torch.rand(2, 3, 64, 64))
    sum(f.mean() for f in feats).backward()
    for name, p in model.named_parameters():
        dead = name.startswith(DEAD_PROJECTS)
        assert p.requires_grad is not dead, name
        if dead:
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 41_728


def test_norm_eval_keeps_statistics():
    model = DLA(norm_eval=True).train()
    before = model.level5.root.bn.running_mean.clone()
    model(torch.rand(1, 3, 64, 64))
    assert torch.equal(model.level5.root.bn.running_mean, before)
    assert model.training and not model.level5.root.bn.training
