"""Test-time augmentation models (registered in ``MODELS``)."""
from .corner_tta import CornerNetTTAModel

__all__ = ['CornerNetTTAModel']
