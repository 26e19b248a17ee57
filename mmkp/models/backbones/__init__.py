"""Backbones of mmkp (registered in ``MODELS``)."""
from .hourglass_squeeze import FireHourglassModule, HourglassSqueezeNet, residual_block  # noqa: F401
from .dla import DLA  # noqa: F401
