# FCOS, ResNet-101 (caffe) + FPN P3-P7, GN head, 1x: the original paper model with ResNet-101 at the 1x schedule
# (tianzhi0549/FCOS trains `fcos_R_101_FPN_2x.yaml` only; this is `fcos_R_50_FPN_1x.yaml` with R-101).
# Faithful to the original in everything listed in fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py (same deviations),
# with the Caffe2/MSRA ImageNet ResNet-101 (`open-mmlab://detectron/resnet101_caffe`).
_base_ = './fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py'
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron/resnet101_caffe')))
