"""Compiled keypoint ops (corner, cascade-corner and center pooling; saccade cropping) and their references.

``mmkp._ext`` (C++ CPU and CUDA kernels, registered as ``torch.ops.mmkp.*`` with autograd and fake kernels) serves
when it is built; otherwise the pure-PyTorch references of :mod:`mmkp.ops.reference` do, with one warning.
Importing this package never fails for want of the extension.
"""
from .ext_loader import ext_loaded, ext_with_cuda
from .pool import CORNERS, DIRECTIONS, center_pool, corner_pool, directional_pool
from .saccade_crop import saccade_crop, saccade_windows

__all__ = [
    'directional_pool', 'corner_pool', 'center_pool', 'saccade_crop', 'saccade_windows', 'ext_loaded',
    'ext_with_cuda', 'DIRECTIONS', 'CORNERS'
]
