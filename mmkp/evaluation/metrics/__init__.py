"""Metrics registered in mmdet's ``METRICS``."""
from .coco_metric import CheckedCocoMetric  # noqa: F401

__all__ = ['CheckedCocoMetric']
