"""Fixtures of the backbone tests: the released checkpoints' key/shape lists.

The key/shape lists are read from ``../shared/reference/original_checkpoints/`` (names and shapes of every tensor in
the released CornerNet-Lite / CornerNet checkpoints, obtained by instantiating the original model classes; no
weights, no code); ``MMKP_REFERENCE_CHECKPOINTS`` points elsewhere.
"""
import json
import os.path as osp

import pytest
import torch

from tests.conftest import ORIGINAL_CHECKPOINTS

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(osp.dirname(HERE)))
BUFFER_SUFFIXES = ('.running_mean', '.running_var', '.num_batches_tracked')


def _load_original(name):
    path = osp.join(ORIGINAL_CHECKPOINTS, f'{name}.json')
    if not osp.isfile(path):
        pytest.fail(f'{path} not found: put ../shared beside the checkout or set MMKP_REFERENCE_CHECKPOINTS')
    with open(path) as f:
        return json.load(f)


def _param_count(shapes, prefixes=('', )):
    """Elements of the parameter tensors (buffers left out) among ``shapes`` whose key starts with a prefix."""
    return sum(
        torch.Size(shape).numel() for key, shape in shapes.items()
        if key.startswith(tuple(prefixes)) and not key.endswith(BUFFER_SUFFIXES))


@pytest.fixture(scope='session')
def original_checkpoint():
    """``original_checkpoint(name)`` -> the parsed ``<name>.json`` of the reference key/shape lists."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _load_original(name)
        return cache[name]

    return get


@pytest.fixture(scope='session')
def param_count():
    """``param_count(shapes, prefixes)`` -> elements of the parameters (not BN buffers) under those key prefixes."""
    return _param_count
