# FCOS, ResNet-50 (caffe) + FPN P3-P7, GN head, 1x: the original paper model, tianzhi0549/FCOS@a773f12
# `configs/fcos/fcos_R_50_FPN_1x.yaml` (reported 37.1 AP on minival in that commit's README.md).
# Faithful to the original:
# - Caffe2/MSRA ImageNet ResNet-50 (`open-mmlab://detectron/resnet50_caffe`), stride in the 1x1 convs, BGR 0-255
#   input, mean [102.9801, 115.9465, 122.7717], std 1; frozen BN; stem and stage 1 frozen (FREEZE_CONV_BODY_AT 2);
# - FPN P3-P5 from C3-C5, P6 = conv3x3/2 on the FPN output P5, P7 = conv3x3/2 on ReLU(P6) (`LastLevelP6P7`,
#   USE_C5 False), convs kaiming_uniform(a=1) with bias 0 (mmdet's FPN default is Xavier);
# - head: 4 x [conv3x3 (with bias) -> GN(32) -> ReLU] per tower, exp(scale * x) regression, center-ness on the
#   classification tower; targets: inside the box, ranges (-1,64,128,256,512,inf) inclusive, smallest area;
#   losses: sigmoid focal (0.25, 2) / num_pos, -log((I+1)/(U+1)) weighted by center-ness / its sum, center-ness BCE;
# - test: cls > 0.05 before center-ness, top 1000 per level by cls * center-ness, score sqrt(cls * center-ness),
#   class-aware NMS 0.6, top 100; short side 800, max 1333, padded to a multiple of 32;
# - SGD lr 0.01, momentum 0.9, weight decay 1e-4, biases (GN's too) lr x2 and no decay, batch 16 (8 GPUs x 2),
#   constant warm-up x1/3 for 500 iterations, no gradient clipping, horizontal flip 0.5, short side 800 max 1333.
# Deviations:
# - 12 epochs with lr / 10 after epochs 8 and 11 for the original's 90k iterations at batch 16 with steps at 60k and
#   80k (12.2 epochs of train2017 = coco_2014_train + valminusminival; steps at epochs 8.1 and 10.8);
# - mmdet's box convention: x2 = x + w (maskrcnn-benchmark: x + w - 1, and its flip x' = W - x - 1), so the right and
#   bottom distances are 1 px longer than the original's; resize rounding is mmcv's;
# - top 100 by sorting (the original keeps ties at the 100th score with kthvalue); NMS after rescaling to the
#   original image (the original before: same boxes up to rounding, the scale being uniform).
_base_ = ['mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

model = dict(
    type='FCOS',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[102.9801, 115.9465, 122.7717],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron/resnet50_caffe')),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',  # P6 from the FPN output P5
        num_outs=5,
        relu_before_extra_convs=True,  # P7 from ReLU(P6)
        init_cfg=dict(
            type='Kaiming', layer='Conv2d', a=1, mode='fan_in', nonlinearity='leaky_relu', distribution='uniform',
            bias=0)),
    bbox_head=dict(
        type='FCOSPointHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        strides=[8, 16, 32, 64, 128],
        norm_on_bbox=False,
        centerness_on_reg=False,
        conv_bias=True,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='FCOSIoULoss', loss_type='iou', smooth=1.0, loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='FCOSRangeAssigner',
            regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)),
            center_sampling=False)),
    test_cfg=dict(
        score_thr=0.05,
        nms_pre=1000,
        nms_pre_by='cls_centerness',
        score_mode='sqrt',
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# CheckedCocoMetric: mmdet's CocoMetric with mmkp's annotation rules applied to the file (docs/reliability.md)
val_evaluator = dict(type='CheckedCocoMetric', ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# checkpoints written to a temporary file, then renamed (never left half-written); mmdet's interval 1
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1))
# a NaN / inf loss term stops the run before the optimizer step (mmkp/engine/hooks.py, docs/reliability.md)
custom_hooks = [dict(type='FiniteLossHook')]
param_scheduler = [
    dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
# maskrcnn-benchmark's make_optimizer: every parameter named "bias" (GN's included) gets lr x2 and no decay;
# mmengine leaves norm biases out of bias_lr_mult, hence the custom key for the head's GN biases.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(
        bias_lr_mult=2.0, bias_decay_mult=0.0, custom_keys={'.gn.bias': dict(lr_mult=2.0, decay_mult=0.0)}))
# lr 0.01 is for the total batch 16 (8 GPUs x 2 images)
auto_scale_lr = dict(enable=False, base_batch_size=16)
