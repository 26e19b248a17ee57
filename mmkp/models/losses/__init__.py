"""Losses of the keypoint heads (registered in ``MODELS``)."""
from .heatmap_focal_loss import HeatmapFocalLoss, heatmap_focal_loss

__all__ = ['HeatmapFocalLoss', 'heatmap_focal_loss']
