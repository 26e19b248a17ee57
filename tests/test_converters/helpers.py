"""Helpers of the converter tests: the released checkpoints' key lists, synthetic originals, original names.

The key lists (names and shapes of every tensor of a released file) are read from
``tests.conftest.ORIGINAL_CHECKPOINTS`` (never copied into the repository); a missing list fails the test.
:func:`original_name` re-states, independently of ``mmkp.converters.cornernet``, where each mmkp tensor lives in the
original models
(princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet.py``, ``core/models/CornerNet_Squeeze.py``;
princeton-vl/CornerNet@e5c39a3 ``models/py_utils/kp.py``).
"""
import json
import math
import os.path as osp
import re
from collections import OrderedDict

import pytest
import torch

from tests.conftest import ORIGINAL_CHECKPOINTS

LITE = 'cornernetlite_cornernet'
ORIG = 'cornernet_orig_cornernet'
SQUEEZE = 'cornernetlite_cornernet_squeeze'
#: tensors with at most this many elements get one distinct value per element; larger ones one value per tensor
SMALL = 4096
#: values of tensor i lie in [i * STEP, i * STEP + SMALL): exact in float32 for the 1128 tensors of CornerNet
STEP = 4096


def key_list(name):
    """The parsed ``<name>.json`` (``state_dict``: original key -> shape, in the file's order)."""
    path = osp.join(ORIGINAL_CHECKPOINTS, f'{name}.json')
    if not osp.isfile(path):
        pytest.fail(f'{path} not found: put ../shared beside the checkout or set MMKP_REFERENCE_CHECKPOINTS')
    with open(path) as f:
        return json.load(f)


def index_filled(shapes, drop=()):
    """A synthetic original state dict: key i holds ``i * STEP + arange`` (small tensors) or ``i * STEP`` everywhere
    (large ones, as an expanded scalar: no memory); ``num_batches_tracked`` holds ``i`` (int64). Keys matching a
    pattern of ``drop`` are left out."""
    out = OrderedDict()
    for i, (key, shape) in enumerate(shapes.items()):
        if any(re.search(p, key) for p in drop):
            continue
        if key.endswith('num_batches_tracked'):
            out[key] = torch.tensor(i, dtype=torch.long)
            continue
        numel = math.prod(shape)
        if numel <= SMALL:
            out[key] = (torch.arange(numel, dtype=torch.float32) + i * STEP).reshape(shape)
        else:
            out[key] = torch.tensor(float(i * STEP)).expand(shape)
    return out


#: mmkp key -> CornerNet-Lite key (without ``module.``), first match wins; written from the mmkp modules' attribute
#: names and the original modules' (``hg.pre / hgs / cnvs / inters / inters_ / cnvs_``, ``corner_pool`` with
#: ``p_conv1 / p_bn1 / conv1 / bn1``, ``_pred_mod``), not from the converter
_HOURGLASS104_TO_LITE = [
    (r'^backbone\.stem\.0\.', 'hg.pre.0.'),
    (r'^backbone\.stem\.1\.0\.downsample\.', 'hg.pre.1.skip.'),
    (r'^backbone\.stem\.1\.0\.', 'hg.pre.1.'),
]
_SQUEEZE_TO_LITE = [
    (r'^backbone\.stem\.(\d)\.downsample\.', r'hg.pre.\1.skip.'),
    (r'^backbone\.stem\.', 'hg.pre.'),
]
_COMMON_TO_LITE = [
    (r'^backbone\.hourglass_modules\.(.*)\.downsample\.', r'hg.hgs.\1.skip.'),
    (r'^backbone\.hourglass_modules\.', 'hg.hgs.'),
    (r'^backbone\.out_convs\.', 'hg.cnvs.'),
    (r'^backbone\.conv1x1s\.(\d)\.conv\.', r'hg.inters_.\1.0.'),
    (r'^backbone\.conv1x1s\.(\d)\.bn\.', r'hg.inters_.\1.1.'),
    (r'^backbone\.remap_convs\.(\d)\.conv\.', r'hg.cnvs_.\1.0.'),
    (r'^backbone\.remap_convs\.(\d)\.bn\.', r'hg.cnvs_.\1.1.'),
    (r'^backbone\.inters\.', 'hg.inters.'),
    (r'^bbox_head\.(tl|br)_modules\.(\d)\.p_conv1\.conv\.', r'\1_modules.\2.p_conv1.'),
    (r'^bbox_head\.(tl|br)_modules\.(\d)\.p_conv1\.bn\.', r'\1_modules.\2.p_bn1.'),
    (r'^bbox_head\.(tl|br)_modules\.(\d)\.conv1\.conv\.', r'\1_modules.\2.conv1.'),
    (r'^bbox_head\.(tl|br)_modules\.(\d)\.conv1\.bn\.', r'\1_modules.\2.bn1.'),
    (r'^bbox_head\.', ''),
]
#: CornerNet-Lite key -> princeton-vl/CornerNet key
_LITE_TO_CN = [(r'^hg\.hgs\.', 'kps.'), (r'^hg\.', ''), (r'^(tl|br)_modules\.', r'\1_cnvs.'),
               (r'^(tl|br)_offs\.', r'\1_regrs.')]


def _first(key, rules):
    for pattern, repl in rules:
        if re.search(pattern, key):
            return re.sub(pattern, repl, key, count=1)
    return key


def original_name(key, name):
    """The key (with ``module.``) that holds mmkp tensor ``key`` in the released file of key list ``name``."""
    lite = _first(key, (_SQUEEZE_TO_LITE if name == SQUEEZE else _HOURGLASS104_TO_LITE) + _COMMON_TO_LITE)
    return 'module.' + (_first(lite, _LITE_TO_CN) if name == ORIG else lite)
