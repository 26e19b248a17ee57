"""Loading of the compiled ops (``mmkp._ext``) and the choice between them and the pure-PyTorch references.

``mmkp._ext`` registers the ``torch.ops.mmkp.*`` kernels when it is imported. When it cannot be imported (not
built, built for another torch, ``MMKP_WITH_OPS=0``), or when a tensor lives on a device it has no kernels for (CUDA
tensors with a CPU-only build), the references of :mod:`mmkp.ops.reference` serve instead and a warning says so,
once per process and reason.
"""
import importlib
import warnings
from types import ModuleType
from typing import Optional, Set

import torch

_EXT: Optional[ModuleType] = None
_EXT_ERROR: Optional[BaseException] = None
_WARNED: Set[str] = set()


def _load() -> None:
    global _EXT, _EXT_ERROR
    try:
        _EXT = importlib.import_module('mmkp._ext')
    except ImportError as e:  # also OSError-free: a broken .so raises ImportError
        _EXT, _EXT_ERROR = None, e


_load()


def ext_loaded() -> bool:
    """Whether ``mmkp._ext`` was imported (its CPU kernels, at least, are registered)."""
    return _EXT is not None


def ext_with_cuda() -> bool:
    """Whether ``mmkp._ext`` was compiled with its CUDA kernels."""
    return _EXT is not None and bool(getattr(_EXT, 'WITH_CUDA', 0))


def _warn_once(key: str, message: str) -> None:
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def use_compiled(tensor: torch.Tensor) -> bool:
    """Whether the op on ``tensor`` runs the compiled kernels; warns once when the reference has to serve.

    Args:
        tensor (Tensor): the main input of the op (its device decides).

    Returns:
        bool: True for the ``torch.ops.mmkp`` kernels, False for :mod:`mmkp.ops.reference`.
    """
    if _EXT is None:
        _warn_once(
            'missing', f'mmkp._ext could not be imported ({_EXT_ERROR}); the keypoint ops fall back to their '
            'pure-PyTorch references in mmkp.ops.reference (same results, slower). Build the extension with '
            '`python setup.py build_ext --inplace` or `pip install --no-build-isolation -e .`.')
        return False
    device_type = tensor.device.type
    if device_type == 'cpu':
        return True
    if device_type == 'cuda':
        if ext_with_cuda():
            return True
        _warn_once(
            'no_cuda', 'mmkp._ext was built without CUDA kernels; the keypoint ops on CUDA tensors fall back to '
            'their pure-PyTorch references. Rebuild with a CUDA torch (or FORCE_CUDA=1) to compile them.')
        return False
    # 'meta' and other devices: the references are plain PyTorch and run anywhere.
    return False
