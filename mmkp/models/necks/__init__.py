"""Necks of mmkp (registered in ``MODELS``)."""
from .dla_neck import DLANeck  # noqa: F401
