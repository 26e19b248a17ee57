# FCOS "imprv" on BCCD with ResNet-18 from scratch: the quick config that visibly learns on a 2-core CPU in about
# 10 minutes (configs/fcos/README.md has the measured numbers and commands).
# Kept from the original (tianzhi0549/FCOS @ a773f12, fcos_core/modeling/rpn/fcos/{fcos,loss,inference}.py and
# configs/fcos/fcos_imprv_R_50_FPN_1x.yaml): P3-P7 with strides 8..128 and the original's ranges, the GN head with
# the imprv options (norm_on_bbox, centerness_on_reg, center sampling 1.5, GIoU with +1 smoothing), the losses and
# their normalisation, and the inference (cls > 0.05 before center-ness, 1000 per level by cls * center-ness, score
# sqrt(cls * center-ness), class-aware NMS 0.6, top 100).
# Deviations, all for a CPU run:
# - input 320x240 (BCCD images are 640x480, so boxes are 10-145 px and fall on P3-P4), horizontal and vertical flips;
# - ResNet-18 at half width (base_channels 32: 32-64-128-256 channels) trained from scratch with BN (no ImageNet
#   weights here), ImageNet RGB normalisation; FPN and head with 64 channels (GN with 16 groups): a third of the
#   cost of the full-width model with a 128-channel head, so three times the epochs in the same CPU time;
# - batch 8, AdamW lr 2e-3 with linear warm-up, gradient clipping, 30 epochs (lr / 10 after 25).
_base_ = [
    '../_base_/datasets/bccd_detection_320x240.py', '../_base_/models/imagenet-rgb_preprocessor.py',
    '../_base_/schedules/quick_cpu.py'
]

model = dict(
    type='FCOS',
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=32,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='FPN',
        in_channels=[64, 128, 256],
        out_channels=64,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=5,
        relu_before_extra_convs=True),
    bbox_head=dict(
        type='FCOSPointHead',
        num_classes=3,
        in_channels=64,
        stacked_convs=4,
        feat_channels=64,
        strides=[8, 16, 32, 64, 128],
        norm_on_bbox=True,
        centerness_on_reg=True,
        conv_bias=True,
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='FCOSIoULoss', loss_type='giou', smooth=1.0, loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='FCOSRangeAssigner',
            regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)),
            center_sampling=True,
            center_sample_radius=1.5,
            norm_on_bbox=True)),
    test_cfg=dict(
        score_thr=0.05,
        nms_pre=1000,
        nms_pre_by='cls_centerness',
        score_mode='sqrt',
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))

# one draw per image: a horizontal or a vertical flip, each with probability 0.5
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=_base_.img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.5, 0.5], direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_epochs = 30
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[25], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
# seeded, so that the numbers in configs/fcos/README.md reproduce (same torch build and thread count)
randomness = dict(seed=0)
