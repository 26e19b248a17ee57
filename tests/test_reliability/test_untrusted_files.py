"""Untrusted checkpoint files (issue 12, item 5): every file mmengine writes loads, foreign globals are refused.

Entry points exercised: plain ``torch.load(weights_only=True)`` (what mmkp's tests and tools call), mmengine's
``load_checkpoint`` / ``_load_checkpoint`` (what ``Runner.load_checkpoint``, ``load_from``, ``--resume`` and
``tools/test.py`` call) and ``mmkp.converters.core.load_source`` (the converters).
"""
import os
import pickle
import re

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
from torch import nn

import mmkp  # noqa: F401  (installs the allowlist and the named local loader)
from mmkp.converters.core import ConversionError, load_source
from mmkp.utils.checkpoint import CHECKPOINT_SAFE_GLOBALS, empty_bytes


def _hub_with_a_never_updated_buffer(name):
    """A message hub as a run leaves it when a scalar was registered but never updated (plus one that was)."""
    hub = MessageHub.get_instance(
        name, log_scalars={'train/never': HistoryBuffer()}, resumed_keys={'train/never': True})
    hub.update_scalar('train/loss', 0.5)
    return hub


def test_never_updated_history_buffer_loads_weights_only(tmp_path):
    """``GLOBAL bytes`` (an empty numpy array's data under pickle protocol 2) loads; the buffer comes back empty."""
    hub = _hub_with_a_never_updated_buffer('r_untrusted_hb')
    path = tmp_path / 'hub.pth'
    torch.save({'state_dict': nn.Linear(2, 1).state_dict(), 'message_hub': hub.state_dict()}, path)
    assert 'builtins.bytes' in _unsafe_without_mmkp(path)  # the file does hold the global
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    buf = ckpt['message_hub']['log_scalars']['train/never']
    assert isinstance(buf, HistoryBuffer) and buf.data[0].size == 0 and buf.data[0].dtype == 'float64'
    assert ckpt['message_hub']['log_scalars']['train/loss'].current() == 0.5
    restored = MessageHub.get_instance('r_untrusted_hb_restored')
    restored.load_state_dict(_load_checkpoint(str(path), map_location='cpu')['message_hub'])
    assert restored.get_scalar('train/loss').current() == 0.5


def _unsafe_without_mmkp(path):
    """Globals of ``path`` that torch's default allowlist lacks (mmkp's allowlist removed for the call)."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    finally:
        torch.serialization.add_safe_globals(saved)


def test_without_the_bytes_stand_in_the_same_file_fails(tmp_path):
    """The failure the stand-in fixes, reproduced: drop ``empty_bytes`` from the allowlist and the load fails."""
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': _hub_with_a_never_updated_buffer('r_untrusted_hb2').state_dict()}, path)
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals([g for g in CHECKPOINT_SAFE_GLOBALS if g != (empty_bytes, 'builtins.bytes')])
    try:
        with pytest.raises(pickle.UnpicklingError, match='GLOBAL bytes'):
            torch.load(path, weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    assert torch.load(path, weights_only=True)['message_hub']['log_scalars']['train/never'].data[0].size == 0


class _BytesOfSize:
    """Unpickles as ``bytes(10)``: a file asking ``bytes`` to allocate."""

    def __reduce__(self):
        return (bytes, (10, ))


def test_bytes_with_arguments_is_refused(tmp_path):
    path = tmp_path / 'alloc.pth'
    torch.save({'x': _BytesOfSize()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r'bytes\(10,\) is not allowed'):
        torch.load(path, weights_only=True)


class _System:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _Eval:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f'open({str(self.marker)!r}, "w")', ))


#: (payload class, the global torch names in its refusal: torch drops the ``builtins.`` of builtins)
PAYLOADS = [(_System, rf'GLOBAL {os.system.__module__}\.system\b'), (_Eval, r'GLOBAL eval\b')]


@pytest.mark.parametrize('payload,global_name', PAYLOADS, ids=['os.system', 'builtins.eval'])
def test_foreign_global_refused_by_every_entry_point(tmp_path, payload, global_name):
    """torch.load, mmengine's load_checkpoint / _load_checkpoint and load_source refuse it; it never runs."""
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': nn.Linear(2, 1).state_dict(), 'payload': payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match=global_name):
        torch.load(path, weights_only=True)
    for load in (lambda: _load_checkpoint(str(path), map_location='cpu'),
                 lambda: load_checkpoint(nn.Linear(2, 1), str(path), map_location='cpu')):
        with pytest.raises(pickle.UnpicklingError) as info:
            load()
        message = str(info.value)
        assert message.startswith(f'{path}: refused') and re.search(global_name, message), message
    with pytest.raises(ConversionError) as info:
        load_source(str(path))
    assert str(info.value).startswith(f'{path}: ') and re.search(global_name, str(info.value)), str(info.value)
    assert not marker.exists(), 'the payload ran'


def test_named_loader_reports_missing_and_truncated_files(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': nn.Linear(2, 1).state_dict()}, good)
    assert set(_load_checkpoint(str(good), map_location='cpu')['state_dict']) == {'weight', 'bias'}
    half = tmp_path / 'half.pth'
    half.write_bytes(good.read_bytes()[:200])
    with pytest.raises(RuntimeError, match='half.pth: not a readable torch checkpoint'):
        _load_checkpoint(str(half), map_location='cpu')
    with pytest.raises(FileNotFoundError, match='missing.pth: checkpoint not found'):
        _load_checkpoint(str(tmp_path / 'missing.pth'), map_location='cpu')


def test_test_tool_refuses_a_foreign_global_naming_file_and_global(tmp_path):
    """``tools/test.py CONFIG evil.pth`` (a subprocess, as a user runs it) stops before testing; nothing runs."""
    import subprocess
    import sys

    from tests.conftest import REPO
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _System(marker)}, path)
    config = 'configs/centernet/centernet_r18_1xb8-quick_bccd.py'
    options = ['test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
               'test_dataloader.dataset.indices=2']
    proc = subprocess.run([sys.executable, 'tools/test.py', config, str(path), '--work-dir', str(tmp_path / 'w'),
                           '--cfg-options', *options], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(rf'{re.escape(str(path))}: refused by torch\.load\(weights_only=True\).*GLOBAL '
                     rf'{os.system.__module__}\.system', out, flags=re.S), out[-3000:]
    assert not marker.exists()
