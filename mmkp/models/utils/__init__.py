"""Shared formulas of the keypoint heads."""
from .gaussian import CompactHeatmap, draw_gaussians, gaussian_radius, integer_radius, keypoint_grid_position
from .heatmap import (boxes_to_original, cells_to_original, feat_to_input_ratio, gather_feat, local_maximum,
                      split_detections, to_xy_ratio, topk_heatmap, topk_peaks)

__all__ = [
    'CompactHeatmap', 'draw_gaussians', 'gaussian_radius', 'integer_radius', 'keypoint_grid_position',
    'boxes_to_original', 'cells_to_original', 'feat_to_input_ratio', 'gather_feat', 'local_maximum',
    'split_detections', 'to_xy_ratio', 'topk_heatmap', 'topk_peaks'
]
from .soft_nms_merge import batched_nms_any_dtype, corner_nms, soft_nms_merge  # noqa: E402

__all__ += ['batched_nms_any_dtype', 'corner_nms', 'soft_nms_merge']
