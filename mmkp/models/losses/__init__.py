"""Losses of the keypoint heads (registered in ``MODELS``)."""
from .heatmap_focal_loss import HeatmapFocalLoss, heatmap_focal_loss

__all__ = ['HeatmapFocalLoss', 'heatmap_focal_loss']
from .ae_pull_push_loss import AssociativeEmbeddingPullPushLoss, ae_pull_push_loss  # noqa: E402

__all__ += ['AssociativeEmbeddingPullPushLoss', 'ae_pull_push_loss']
from .fcos_iou_loss import FCOSIoULoss, fcos_iou_loss  # noqa: E402

__all__ += ['FCOSIoULoss', 'fcos_iou_loss']
