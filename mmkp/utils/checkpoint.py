"""Load mmengine checkpoints on torch >= 2.6 with ``weights_only`` kept on.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7 calls ``torch.load`` without the
argument, so every checkpoint it saved (``message_hub`` holds ``HistoryBuffer``\\ s, ``meta`` holds numpy scalars)
fails to load in ``tools/test.py``, ``--resume`` and ``load_from`` (``Unsupported global: GLOBAL
mmengine.logging.history_buffer.HistoryBuffer``; mmengine issue #1655).

The fix here keeps the safety check and allowlists exactly the types such checkpoints hold
(``torch.serialization.add_safe_globals``); anything else, ``os.system`` for instance, is still refused.
The list was read off checkpoints written by ``Runner.save_checkpoint`` with
``torch.serialization.get_unsafe_globals_in_checkpoint``; ``tests/test_utils/test_checkpoint.py`` re-checks it.
"""
import pickle
from typing import List

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


CHECKPOINT_SAFE_GLOBALS: List[object] = [HistoryBuffer, (history_buffer_method, 'builtins.getattr')
                                         ] + _numpy_globals()


def register_checkpoint_safe_globals() -> None:
    """Allowlist :data:`CHECKPOINT_SAFE_GLOBALS` for ``torch.load(weights_only=True)``.

    Called once by ``import mmkp``; a no-op on torch < 2.4, which has no allowlist (and no weights-only default).
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(CHECKPOINT_SAFE_GLOBALS)
