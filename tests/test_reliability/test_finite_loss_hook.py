"""A NaN in training (issue 12, item 3): ``FiniteLossHook`` through mmengine's Runner on a real mmkp detector.

Two iterations of the quick CenterNet-R18 config on 4 BCCD images (batch 2); the second batch gets NaN pixels after
the data preprocessor, so every loss term of the real forward is NaN. ``'raise'`` must stop at iteration 2 naming
the terms, with the weights of iteration 1 in memory; ``'skip'`` must finish with the weights and batch-norm
statistics of iteration 1 and a finite checkpoint.
"""
import math
import re

import pytest
import torch
from mmengine.hooks import Hook

from mmkp.engine import FiniteLossHook
from mmkp.engine.hooks import nonfinite_loss_terms
from tests.test_reliability.helpers import build_runner, tiny_cfg


class _Snapshot(Hook):
    """Keeps the model's state dict as it is before each training iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.before = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before[runner.iter] = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def _nan_at_second_batch(runner):
    """Wrap the data preprocessor: the second training batch gets NaN in a 4x4 patch of its first image."""
    preprocessor = runner.model.data_preprocessor
    forward = preprocessor.forward
    calls = []

    def poisoned(data, training=False):
        out = forward(data, training)
        if training:
            calls.append(1)
            if len(calls) == 2:
                out['inputs'][0, :, :4, :4] = float('nan')
        return out

    preprocessor.forward = poisoned


def _runner(tmp_path, name, **hook):
    cfg = tiny_cfg(tmp_path / name, name=f'r_finite_{name}', custom_hooks=[dict(type='FiniteLossHook', **hook)])
    runner = build_runner(cfg)
    snapshot = _Snapshot()
    runner.register_hook(snapshot)
    _nan_at_second_batch(runner)
    return runner, snapshot


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_raise_names_iteration_and_terms_before_the_step(tmp_path):
    runner, snapshot = _runner(tmp_path, 'raise')
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 2 (runner.iter == 1, epoch 1)' in message, message
    for term in ('loss_heatmap', 'loss_size', 'loss_offset'):
        assert re.search(rf'{term}=nan\b', message), message
    state = runner.model.state_dict()
    assert all(torch.isfinite(v).all() for k, v in state.items() if 'running' not in k)
    weights = {k: v for k, v in state.items() if 'running' not in k and 'num_batches' not in k}
    assert _equal(weights, snapshot.before[1])  # iteration 2 stepped nothing
    assert not _equal(snapshot.before[0], snapshot.before[1])  # iteration 1 did step (the check can fail)
    assert not list((tmp_path / 'raise').glob('**/*.pth'))


def test_skip_counts_the_step_and_keeps_weights_and_buffers(tmp_path):
    runner, snapshot = _runner(tmp_path, 'skip', action='skip')
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, FiniteLossHook))
    assert hook.skipped == 1 and runner.message_hub.get_info('nonfinite_loss_skips') == 1
    assert runner.iter == 2
    state = runner.model.state_dict()
    changed = [k for k in state if not torch.equal(state[k], snapshot.before[1][k]) and 'num_batches' not in k]
    assert changed == []  # weights untouched, batch-norm running mean / var restored
    assert not _equal(snapshot.before[0], snapshot.before[1])
    ckpt = torch.load(tmp_path / 'skip' / 'epoch_1.pth', map_location='cpu', weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())
    log = (next((tmp_path / 'skip').glob('*/*.log'))).read_text()
    assert 'FiniteLossHook: iteration 2 (runner.iter == 1, epoch 1): non-finite loss term(s)' in log
    assert 'epoch 1: 1 step(s) skipped for a non-finite loss (1 in the run)' in log


def test_skip_stops_past_max_skips(tmp_path):
    runner, _ = _runner(tmp_path, 'max', action='skip', max_skips=0)
    with pytest.raises(FloatingPointError, match=r'iteration 2 .* after 0 skipped steps \(max_skips\)'):
        runner.train()


def test_nonfinite_loss_terms_per_term_and_list_terms():
    losses = dict(
        loss_a=torch.tensor(1.0),
        loss_b=[torch.tensor([1.0, 2.0]), torch.tensor([math.inf])],
        loss_c=torch.tensor([[0.5, -math.inf]]),
        acc=torch.tensor(math.nan),
        loss_d=[torch.zeros(3)])
    expected = [k for k, v in losses.items()  # per-item reference: any entry of any tensor
                if any(not math.isfinite(x) for t in (v if isinstance(v, list) else [v]) for x in t.reshape(-1))]
    assert nonfinite_loss_terms(losses) == expected == ['loss_b', 'loss_c', 'acc']
    assert nonfinite_loss_terms({'loss': torch.ones(2)}) == []
    with pytest.raises(TypeError, match="loss term 'x' is a float"):
        nonfinite_loss_terms({'x': 1.0})
    with pytest.raises(ValueError, match='action must be'):
        FiniteLossHook(action='ignore')
