"""mmkp.converters.core on small synthetic layouts: rule order, prefixes, refusals, optional buffers, files."""
import os
import pickle
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from mmkp.converters.core import (ConversionError, Layout, StateDictConverter, extract_state_dict, load_source,
                                  save_converted, target_shapes_from_model)

#: a toy "original": conv (bias), a BN under the name ``norm`` and a classifier it never runs
RULES = [
    (r'^body\.conv\.', 'backbone.conv.'),
    (r'^body\.norm\.', 'backbone.bn.'),
    (r'^body\.', 'backbone.rest.'),  # never reached by body.conv / body.norm: the first match wins
    (r'^fc\.', None),
]
TOY = Layout(name='toy', original='example/toy@0000000 toy.py', rules=RULES)


class Toy(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv = nn.Conv2d(2, 3, 1)
        self.backbone.bn = nn.BatchNorm2d(3)


def _source(with_tracked=True, prefix='module.'):
    sd = OrderedDict()
    sd[prefix + 'body.conv.weight'] = torch.arange(6.).reshape(3, 2, 1, 1)
    sd[prefix + 'body.conv.bias'] = torch.tensor([10., 11., 12.])
    for i, name in enumerate(('weight', 'bias', 'running_mean', 'running_var')):
        sd[f'{prefix}body.norm.{name}'] = torch.full((3, ), float(20 + i))
    if with_tracked:
        sd[prefix + 'body.norm.num_batches_tracked'] = torch.tensor(7)
    sd[prefix + 'fc.weight'] = torch.ones(5, 3)
    return sd


@pytest.fixture
def converter():
    return StateDictConverter(TOY, target_shapes_from_model(Toy()), name='toy_to_mmkp')


def test_rules_rename_prefixes_first_match_wins_and_values_pass_through(converter):
    src = _source()
    result = converter.convert(src, 'toy.pkl')
    assert list(result.state_dict) == list(Toy().state_dict())  # the target's order
    assert result.state_dict['backbone.bn.running_var'] is src['module.body.norm.running_var']
    assert result.sources['backbone.conv.bias'] == 'module.body.conv.bias'
    assert result.dropped == ['module.fc.weight'] and result.filled == []
    model = Toy()
    model.load_state_dict(result.state_dict, strict=True)
    assert torch.equal(model.backbone.conv.weight, torch.arange(6.).reshape(3, 2, 1, 1))
    assert model.backbone.bn.num_batches_tracked.item() == 7
    assert result.layout is TOY


def test_module_prefix_is_optional_per_key(converter):
    src = _source(prefix='')
    src['module.extra'] = src.pop('fc.weight')  # -> 'extra': matches no rule, named with its prefix
    with pytest.raises(ConversionError, match=r"toy\.pkl .*1 key\(s\) match no rule: 'module\.extra'"):
        converter.convert(src, 'toy.pkl')
    mixed = _source(prefix='')
    mixed['module.body.conv.bias'] = mixed.pop('body.conv.bias')
    assert converter.convert(mixed).sources['backbone.conv.bias'] == 'module.body.conv.bias'


def test_unknown_key_is_refused_by_name(converter):
    src = _source()
    src['module.head.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"toy\.pkl \(read as the toy layout by toy_to_mmkp\): 1 key\(s\) match "
                       r"no rule: 'module\.head\.weight'"):
        converter.convert(src, 'toy.pkl')


def test_key_mapped_outside_the_model_is_refused_by_name(converter):
    src = _source()
    src['module.body.extra.weight'] = torch.zeros(1)  # -> backbone.rest.extra.weight
    with pytest.raises(ConversionError, match=r"module\.body\.extra\.weight -> backbone\.rest\.extra\.weight"):
        converter.convert(src, 'toy.pkl')


def test_missing_key_is_refused_by_name(converter):
    src = _source()
    del src['module.body.norm.running_mean']
    with pytest.raises(ConversionError, match=r"toy\.pkl .*1 key\(s\) of the model are filled by no source key: "
                       r"'backbone\.bn\.running_mean'"):
        converter.convert(src, 'toy.pkl')


def test_shape_mismatch_is_refused_with_both_shapes(converter):
    src = _source()
    src['module.body.conv.weight'] = torch.zeros(3, 2, 3, 3)
    with pytest.raises(ConversionError, match=re.escape("shape mismatch: 'module.body.conv.weight' has shape "
                                                        "[3, 2, 3, 3], its target 'backbone.conv.weight' has shape "
                                                        "[3, 2, 1, 1]")):
        converter.convert(src, 'toy.pkl')


def test_collision_is_refused_naming_both_keys(converter):
    src = _source()
    src['body.conv.bias'] = torch.zeros(3)  # the same target as module.body.conv.bias
    with pytest.raises(ConversionError, match=r"'body\.conv\.bias' and 'module\.body\.conv\.bias' both map to "
                       r"'backbone\.conv\.bias'"):
        converter.convert(src, 'toy.pkl')


def test_num_batches_tracked_absent_from_the_source_is_filled_with_zero(converter):
    result = converter.convert(_source(with_tracked=False))
    assert result.filled == ['backbone.bn.num_batches_tracked']
    value = result.state_dict['backbone.bn.num_batches_tracked']
    assert value.dtype == torch.long and value.shape == () and value.item() == 0
    Toy().load_state_dict(result.state_dict, strict=True)


def test_shapes_instead_of_tensors(converter):
    shapes = OrderedDict((k, list(v.shape)) for k, v in _source().items())
    result = converter.convert(shapes)
    assert result.state_dict['backbone.conv.weight'] == [3, 2, 1, 1]
    shapes['module.body.conv.bias'] = 'three'
    with pytest.raises(ConversionError, match=r"'module\.body\.conv\.bias': not a tensor nor a shape: str"):
        converter.convert(shapes)


def test_aliases_and_layout_detection():
    second = Layout(
        name='toy-v2', original='example/toy@1111111 toy2.py', rules=RULES, aliases=[(r'^net\.', 'body.')],
        signature=r'^net\.')
    first = Layout(name='toy', original=TOY.original, rules=RULES, signature=r'^body\.')
    conv = StateDictConverter([first, second], target_shapes_from_model(Toy()), name='toy_to_mmkp')
    renamed = OrderedDict((k.replace('module.body.', 'net.'), v) for k, v in _source().items())
    result = conv.convert(renamed)
    assert result.layout is second and result.sources['backbone.bn.bias'] == 'net.norm.bias'
    assert conv.convert(_source()).layout is first
    with pytest.raises(ConversionError, match=r'matches none of the layouts toy_to_mmkp reads'):
        conv.convert({'other.weight': torch.zeros(1)}, 'x.pth')
    both = dict(_source())
    both['net.norm.weight'] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r'matches several \(toy, toy-v2\)'):
        conv.convert(both, 'x.pth')
    with pytest.raises(ValueError, match='every layout needs a signature'):
        StateDictConverter([TOY, second], {})
    with pytest.raises(ValueError, match='cannot drop'):
        Layout(name='bad', original='', rules=RULES, aliases=[(r'^x', None)])


def test_extract_state_dict_bare_and_wrapped():
    sd = _source()
    assert extract_state_dict(sd) == (sd, 'bare')
    assert extract_state_dict({'epoch': 140, 'state_dict': sd}) == (sd, 'state_dict')
    assert extract_state_dict({'model': sd, 'iteration': 90000}) == (sd, 'model')
    with pytest.raises(ConversionError, match=r"f\.pth: no state dict found.*'epoch'"):
        extract_state_dict({'epoch': 1, 'optimizer': {}}, 'f.pth')
    with pytest.raises(ConversionError, match='holds a list'):
        extract_state_dict([1], 'f.pth')


class _Evil:

    def __reduce__(self):
        return (os.system, ('echo should-not-run', ))


def test_load_source_is_weights_only_and_names_the_file(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': _source()}, good)
    sd, wrapper = load_source(str(good))
    assert wrapper == 'state_dict' and torch.equal(sd['module.body.conv.bias'], torch.tensor([10., 11., 12.]))
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': _source(), 'x': _Evil()}, evil)
    with pytest.raises(ConversionError, match=r'evil\.pth: torch\.load\(weights_only=True\) refused it') as info:
        load_source(str(evil))
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_source(str(tmp_path / 'missing.pth'))


def test_saved_file_loads_weights_only_and_strictly(converter, tmp_path):
    result = converter.convert(_source(with_tracked=False))
    dst = tmp_path / 'out.pth'
    meta = save_converted(result, str(dst), dict(converter='toy_to_mmkp'))
    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'} and ckpt['meta'] == meta
    assert meta['layout'] == 'toy' and meta['original'] == 'example/toy@0000000 toy.py'
    assert meta['filled'] == ['backbone.bn.num_batches_tracked'] and meta['dropped'] == ['module.fc.weight']
    model = Toy()
    model.load_state_dict(ckpt['state_dict'], strict=True)
    assert torch.equal(model.backbone.bn.bias, torch.full((3, ), 21.))
