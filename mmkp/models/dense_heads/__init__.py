"""Dense heads, one per detector family (registered in ``MODELS``)."""
from .center_heatmap_head import CenterHeatmapHead

__all__ = ['CenterHeatmapHead']
