"""Backbones of mmkp (registered in ``MODELS``)."""
from .hourglass_squeeze import FireHourglassModule, HourglassSqueezeNet, residual_block  # noqa: F401
from .dla import DLA  # noqa: F401
from .hourglass54 import Hourglass54, MergeHourglassModule  # noqa: F401
from .hourglass import StackedHourglassNet  # noqa: F401
