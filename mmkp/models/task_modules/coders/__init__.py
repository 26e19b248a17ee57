"""Decoders from raw keypoint maps to boxes."""
from .center_heatmap_decoder import CenterHeatmapDecoder
from .corner_pair_decoder import CornerPairDecoder

__all__ = ['CenterHeatmapDecoder', 'CornerPairDecoder']
