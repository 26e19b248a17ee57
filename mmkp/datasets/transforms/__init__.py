"""Training crops and photometric transforms of the originals that mmdet lacks (registered in ``TRANSFORMS``)."""
from .color import RandomColorJitter, RandomPCALighting

__all__ = ['RandomColorJitter', 'RandomPCALighting']
from .corner_crop import CornerNetRandomCrop  # noqa: E402

__all__ += ['CornerNetRandomCrop']
from .saccade_sampler import SaccadeObjectCrop  # noqa: E402

__all__ += ['SaccadeObjectCrop']
