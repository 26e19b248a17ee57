# FCOS, ResNet-50 (caffe) + FPN P3-P7, GN head, 2x with multi-scale training: the original's 2x recipe
# (`fcos_R_101_FPN_2x.yaml`: 180k iterations at batch 16, steps 120k / 160k, MIN_SIZE_RANGE_TRAIN (640, 800))
# on ResNet-50. Faithful to the original in everything listed in fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py, plus:
# - training short side drawn uniformly from the integers 640..800 per image (the original's
#   `range(640, 801)`; mmdet's own 2x configs use only 640 and 800), long side at most 1333; test short side 800.
# Deviations: those of the 1x config; 24 epochs with lr / 10 after epochs 16 and 22 for 180k iterations (about
# 24.3 epochs) with steps at 120k and 160k (epochs 16.2 and 21.6).
_base_ = './fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py'
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(1333, 640), (1333, 800)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_epochs = 24
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[16, 22], gamma=0.1)
]
