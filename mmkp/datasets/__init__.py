"""Datasets and transforms."""
from . import transforms  # noqa: F401
from .coco import CheckedCocoDataset  # noqa: F401
