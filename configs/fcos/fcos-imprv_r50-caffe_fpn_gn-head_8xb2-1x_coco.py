# FCOS "imprv", ResNet-50 (caffe) + FPN P3-P7, GN head, 1x: the original `configs/fcos/fcos_imprv_R_50_FPN_1x.yaml`
# (reported 38.7 AP on minival).
# The "improvements" of tianzhi0549/FCOS (`fcos_imprv_*.yaml`), each a named option of mmkp:
# - NORM_REG_TARGETS: bbox_head.norm_on_bbox=True (relu(scale * x) in stride units; targets / stride; x stride
#   at test), and the assigner divides its targets by the stride;
# - CENTERNESS_ON_REG: bbox_head.centerness_on_reg=True (center-ness from the box tower);
# - CENTER_SAMPLING_RADIUS 1.5: assigner center_sampling=True, center_sample_radius=1.5 (positives strictly inside
#   the centre +- 1.5 strides, clipped to the box);
# - IOU_LOSS_TYPE giou: FCOSIoULoss(loss_type="giou"), with the original +1 smoothing of I and U (in stride units,
#   as the original). mmdet's GIoULoss (no smoothing) is a drop-in alternative: loss_bbox=dict(type="GIoULoss").
# Everything else (weights, input, FPN, head layout, losses, inference, schedule, optimiser) and the deviations are
# those of fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py. mmdet's "tricks" config differs from the original here: it
# uses detectron2 weights with another mean, NMS 0.6 and linear warm-up.
_base_ = './fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py'
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

model = dict(
    bbox_head=dict(
        norm_on_bbox=True,
        centerness_on_reg=True,
        loss_bbox=dict(type='FCOSIoULoss', loss_type='giou', smooth=1.0, loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='FCOSRangeAssigner',
            regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)),
            center_sampling=True,
            center_sample_radius=1.5,
            norm_on_bbox=True)))
