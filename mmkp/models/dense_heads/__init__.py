"""Dense heads, one per detector family (registered in ``MODELS``)."""
from .center_heatmap_head import CenterHeatmapHead

__all__ = ['CenterHeatmapHead']
from .fcos_point_head import FCOSPointHead, original_fcos_key_map  # noqa: E402

__all__ += ['FCOSPointHead', 'original_fcos_key_map']
from .corner_pool_head import CornerPoolHead  # noqa: E402

__all__ += ['CornerPoolHead']
