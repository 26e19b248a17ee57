"""Load mmengine checkpoints on torch >= 2.6 with ``weights_only`` kept on.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7 calls ``torch.load`` without the
argument, so every checkpoint it saved (``message_hub`` holds ``HistoryBuffer``\\ s, ``meta`` holds numpy scalars)
fails to load in ``tools/test.py``, ``--resume`` and ``load_from`` (``Unsupported global: GLOBAL
mmengine.logging.history_buffer.HistoryBuffer``; mmengine issue #1655).

The fix here keeps the safety check and allowlists exactly the types such checkpoints hold
(``torch.serialization.add_safe_globals``); anything else, ``os.system`` for instance, is still refused.
The list was read off checkpoints written by ``Runner.save_checkpoint`` with
``torch.serialization.get_unsafe_globals_in_checkpoint``; ``tests/e2e/test_tools.py`` and
``tests/test_reliability/test_untrusted_files.py`` re-check it.

mmengine's local checkpoint loader (``CheckpointLoader`` scheme ``''``, used by ``Runner.load_checkpoint``,
``--resume``, ``load_from`` and ``tools/test.py``) is replaced by :func:`load_local_checkpoint`, which loads with
``weights_only=True`` explicitly and names the file in every refusal (torch's own message names the global only).
"""
import os.path as osp
import pickle
from typing import List, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _numpy_globals() -> List[object]:
    """numpy callables and types that pickled arrays, scalars and dtypes refer to.

    Names are given both as numpy 2 (``numpy._core``) and numpy 1 (``numpy.core``) spell them, so that a checkpoint
    written under either loads under the installed one.
    """
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    entries: List[object] = [np.ndarray, np.dtype]
    for fn in ('_reconstruct', 'scalar'):
        obj = getattr(multiarray, fn)
        entries += [(obj, f'numpy._core.multiarray.{fn}'), (obj, f'numpy.core.multiarray.{fn}')]
    # dtype classes (numpy >= 1.25 pickles dtypes as instances of these) for the numeric and bool types.
    scalar_types = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                    np.float16, np.float32, np.float64)
    entries += [type(np.dtype(t)) for t in scalar_types]
    return entries


#: the statistics methods HistoryBuffer registers on construction (``_set_default_statistics``)
_HISTORY_BUFFER_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def history_buffer_method(owner: type, name: str):
    """Stand-in for ``builtins.getattr`` when unpickling: only ``HistoryBuffer``'s statistics methods.

    ``HistoryBuffer`` keeps its statistics methods (``min``, ``max``, ``current``, ``mean`` and any registered with
    ``HistoryBuffer.register_statistics``) in a dict, which pickle (protocol 2, as ``torch.save`` uses) writes as
    ``getattr(HistoryBuffer, 'min')``. Allowlisting ``getattr`` itself would let a checkpoint reach any attribute of
    any allowed object (and from there, code); this function resolves exactly those methods and refuses the rest.

    Raises:
        pickle.UnpicklingError: for any other (object, attribute) pair.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS | set(HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'mmkp checkpoint allowlist: getattr({owner!r}, {name!r}) is not allowed')


def empty_bytes(*args) -> bytes:
    """Stand-in for ``builtins.bytes`` when unpickling: only ``bytes()``, the empty byte string.

    Pickle protocol 2 (``torch.save``'s) writes ``b''`` as the call ``bytes()``; numpy pickles the data of an empty
    array as ``b''``, and a ``HistoryBuffer`` that was never updated holds two empty arrays, so a checkpoint whose
    message hub has one fails with ``Unsupported global: GLOBAL bytes``. Non-empty bytes are written as
    ``_codecs.encode`` (which ``weights_only`` already knows). ``bytes`` itself is not allowlisted: ``bytes(n)``
    would let a file allocate ``n`` bytes.

    Raises:
        pickle.UnpicklingError: for any argument.
    """
    if args:
        raise pickle.UnpicklingError(f'mmkp checkpoint allowlist: bytes{args!r} is not allowed (only bytes())')
    return b''


CHECKPOINT_SAFE_GLOBALS: List[object] = [
    HistoryBuffer, (history_buffer_method, 'builtins.getattr'), (empty_bytes, 'builtins.bytes')
] + _numpy_globals()


def load_local_checkpoint(filename: str, map_location: Optional[object] = None):
    """mmengine's local checkpoint loader, with ``weights_only=True`` explicit and the file named in every error.

    Registered for mmengine's ``CheckpointLoader`` scheme ``''`` (local paths) by
    :func:`register_checkpoint_safe_globals`, so ``mmengine.runner.load_checkpoint``, ``Runner.load_checkpoint`` and
    ``Runner.resume`` (``load_from``, ``--resume``, ``tools/test.py``) go through it.

    Args:
        filename (str): local path; ``~`` is expanded.
        map_location: as for ``torch.load``. Defaults to None.

    Returns:
        The unpickled checkpoint (usually a dict).

    Raises:
        FileNotFoundError: no such file (named).
        pickle.UnpicklingError: ``weights_only`` refused a global (the message names the file and the global, e.g.
            ``GLOBAL posix.system``).
        RuntimeError: the file is not a readable torch checkpoint (truncated, not a zip / pickle), named.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename}: checkpoint not found')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f'{filename}: refused by torch.load(weights_only=True) with mmkp\'s '
                                     f'allowlist (mmkp.utils.checkpoint): {e}') from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise RuntimeError(f'{filename}: not a readable torch checkpoint (truncated or not written by '
                           f'torch.save?): {e}') from e


def register_checkpoint_safe_globals() -> None:
    """Allowlist :data:`CHECKPOINT_SAFE_GLOBALS` for ``torch.load(weights_only=True)`` and install
    :func:`load_local_checkpoint` as mmengine's loader of local checkpoint files.

    Called once by ``import mmkp``; the allowlist is a no-op on torch < 2.4, which has none.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(CHECKPOINT_SAFE_GLOBALS)
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
