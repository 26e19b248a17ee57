"""Test-time augmentation models (registered in ``MODELS``)."""
from .center_tta import CenterNetTTAModel
from .corner_tta import CornerNetTTAModel

__all__ = ['CenterNetTTAModel', 'CornerNetTTAModel']
