"""Target assigners of the keypoint and anchor-free heads."""
from .gaussian_heatmap_assigner import GaussianHeatmapAssigner, HeatmapTargets

__all__ = ['GaussianHeatmapAssigner', 'HeatmapTargets']
from .fcos_range_assigner import FCOSRangeAssigner, FCOSTargets, centerness_target  # noqa: E402

__all__ += ['FCOSRangeAssigner', 'FCOSTargets', 'centerness_target']
from .saccade_attention_assigner import SaccadeAttentionAssigner  # noqa: E402

__all__ += ['SaccadeAttentionAssigner']
