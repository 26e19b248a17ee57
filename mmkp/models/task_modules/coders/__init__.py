"""Decoders from raw keypoint maps to boxes."""
from .center_heatmap_decoder import CenterHeatmapDecoder

__all__ = ['CenterHeatmapDecoder']
from .corner_pair_decoder import CornerPairDecoder, topk_peaks  # noqa: E402

__all__ += ['CornerPairDecoder', 'topk_peaks']
