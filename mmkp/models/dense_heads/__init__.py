"""Dense heads, one per detector family (registered in ``MODELS``), and what they share."""
from .keypoint_head import KeypointHeadMixin, KeypointMaps
from .center_heatmap_head import CenterHeatmapHead
from .corner_pool_head import CornerPoolHead
from .fcos_point_head import FCOSPointHead, original_fcos_key_map
from .saccade_head import SaccadeHead
from .triplet_head import TripletHead

__all__ = ['KeypointHeadMixin', 'KeypointMaps', 'CenterHeatmapHead', 'CornerPoolHead', 'FCOSPointHead',
           'original_fcos_key_map', 'SaccadeHead']
__all__ += ['TripletHead']
