# FCOS "imprv", ResNet-101 (caffe) + FPN P3-P7, GN head, 1x: fcos-imprv_r50-caffe_fpn_gn-head_8xb2-1x_coco.py with
# the Caffe2/MSRA ImageNet ResNet-101 (`open-mmlab://detectron/resnet101_caffe`); the original trains R-101 only
# at 2x (`fcos_imprv_R_101_FPN_2x.yaml`).
# The "improvements" of tianzhi0549/FCOS (`fcos_imprv_*.yaml`), each a named option of mmkp:
# - NORM_REG_TARGETS: bbox_head.norm_on_bbox=True (relu(scale * x) in stride units; targets / stride; x stride
#   at test), and the assigner divides its targets by the stride;
# - CENTERNESS_ON_REG: bbox_head.centerness_on_reg=True (center-ness from the box tower);
# - CENTER_SAMPLING_RADIUS 1.5: assigner center_sampling=True, center_sample_radius=1.5 (positives strictly inside
#   the centre +- 1.5 strides, clipped to the box);
# - IOU_LOSS_TYPE giou: FCOSIoULoss(loss_type="giou"), with the original +1 smoothing of I and U (in stride units,
#   as the original). mmdet's GIoULoss (no smoothing) is a drop-in alternative: loss_bbox=dict(type="GIoULoss").
# Everything else and the deviations: fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py.
_base_ = './fcos-imprv_r50-caffe_fpn_gn-head_8xb2-1x_coco.py'
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron/resnet101_caffe')))
