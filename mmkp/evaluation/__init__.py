"""Evaluation metrics."""
from .metrics import CheckedCocoMetric  # noqa: F401

__all__ = ['CheckedCocoMetric']
