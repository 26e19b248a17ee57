"""Target assigners of the keypoint and anchor-free heads."""
from .gaussian_heatmap_assigner import GaussianHeatmapAssigner, HeatmapTargets

__all__ = ['GaussianHeatmapAssigner', 'HeatmapTargets']
