"""Layers of mmkp (registered in ``MODELS``)."""
from .fire_module import FireModule  # noqa: F401
from .pool_modules import CascadeCornerPoolModule, CenterPoolModule, CornerPoolModule  # noqa: F401
