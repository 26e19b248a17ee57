"""Decoders from raw keypoint maps to boxes."""
from .center_heatmap_decoder import CenterHeatmapDecoder

__all__ = ['CenterHeatmapDecoder']
