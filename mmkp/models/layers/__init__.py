"""Layers of mmkp (registered in ``MODELS``)."""
from .fire_module import FireModule  # noqa: F401
