"""Decoders from raw keypoint maps to boxes."""
from .center_heatmap_decoder import CenterHeatmapDecoder
from .corner_pair_decoder import CornerPairDecoder
from .triplet_decoder import TripletDecoder, center_region_check, central_regions

__all__ = ['CenterHeatmapDecoder', 'CornerPairDecoder']
__all__ += ['TripletDecoder', 'center_region_check', 'central_regions']
