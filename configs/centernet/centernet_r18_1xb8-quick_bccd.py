# CenterNet (Objects as Points), ResNet-18 from scratch on BCCD: the quick-start config (`make quickstart`).
# Trains on a 2-core CPU in about 8 minutes. Deviations from the paper config, all for speed on a CPU:
# - input 320x240 (images are 640x480), no crop; horizontal and vertical flips (cells have no up/down);
# - ResNet-18 trained from scratch (no ImageNet weights here), plain (non-DCN) up-sampling neck;
# - batch 8, Adam lr 1e-3 with warm-up and gradient clipping, 11 epochs (lr / 10 after 9): about 8 minutes here.
# Kept from the original: head, targets (original radius formula, IoU 0.7, sigma = d / 6), losses and decoding.
_base_ = ['../_base_/datasets/bccd_detection.py', 'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)

model = dict(
    type='CenterNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=18, norm_eval=False, norm_cfg=dict(type='BN'), init_cfg=None),
    neck=dict(
        type='CTResNetNeck',
        in_channels=512,
        num_deconv_filters=(256, 128, 64),
        num_deconv_kernels=(4, 4, 4),
        use_dcn=False),
    bbox_head=dict(type='CenterHeatmapHead', num_classes=3, in_channels=64, feat_channels=64),
    train_cfg=dict(
        assigner=dict(
            type='GaussianHeatmapAssigner',
            keypoints=('center', ),
            radius_formula='original',
            min_overlap=0.7,
            clip_to='output')),
    test_cfg=dict(decoder=dict(type='CenterHeatmapDecoder', topk=100, clip_border=True), max_per_img=100))

img_scale = (320, 240)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    # each of the 4 flip states (none, horizontal, vertical, both) with probability 1/4
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25], direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=8, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=2, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 11
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3), clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[9], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
# seeded, so that `make quickstart` reproduces the numbers in the README (same torch build and thread count)
randomness = dict(seed=0)
