# CornerNet (Law & Deng, ECCV 2018), Hourglass-104, COCO: the paper / CornerNet-Lite `configs/CornerNet.json` setting
# (princeton-vl/CornerNet-Lite@6a54505, `core/models/CornerNet.py`). Faithful:
# - model: mmdet's HourglassNet (= Hourglass-104, checked parameter for parameter: 187,700,352) + CornerPoolHead
#   (corner pooling, heatmap bias -2.19, 3x3 prediction modules, intermediate supervision on both stacks);
#   201,035,212 parameters, as the released model; PyTorch default init, trained from scratch;
# - targets: corrected radius formula with IoU 0.3, sigma = d / 6, ratio 128 / 511, floor of the corner cells;
# - losses: clamped focal loss (TL + BR), pull / push 0.1 (original normalisation, summed over images), offsets
#   SmoothL1 / (#objects + 1e-4), everything divided by the number of stacks;
# - data: random scale crop 0.6-1.3 of 511 with border 128 and zero padding (CornerNetRandomCrop), resize to 511,
#   flip, color jitter 0.4 + PCA lighting 0.1, CornerNet's BGR mean / std on BGR images; every train2017 image;
# - Adam lr 2.5e-4 (no warm-up, no gradient clipping), 500k iterations, lr / 10 at 450k (IterBasedTrainLoop);
# - test: input padded with zeros to (h | 127, w | 127), top 100 corners per type, ae threshold 0.5, 3x3 peaks,
#   1000 pairs, Gaussian soft-NMS (sigma 0.5, discard < 0.001, "+1" areas), 100 per image.
# Deviations (all named in configs/cornernet/README.md):
# - batch 10 x 5 = 50 (the original: 49 on 10 GPUs with chunks [4, 5 x 9]; the loss is per GPU as the original);
# - test-time flip (the original's default) only with `tools/test.py --tta` (CornerNetTTAModel pools the raw pairs
#   of both views and runs one soft-NMS, as the original); the plain test pipeline is single view;
# - the original ignores soft-NMS's keep list (ghost duplicates) and keeps ties of the 100th score: mmkp does not;
# - training flip maps x -> W - x (mmdet) where the original maps x -> W - x - 1.
_base_ = ['mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

mean = [104.01362, 114.03422, 119.91659]  # 255 * [0.40789654, 0.44719302, 0.47026115], BGR
std = [73.60276, 69.89082, 70.91508]  # 255 * [0.28863828, 0.27408164, 0.27809835], BGR
model = dict(
    type='CornerNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=mean, std=std, bgr_to_rgb=False),
    backbone=dict(
        type='HourglassNet',
        downsample_times=5,
        num_stacks=2,
        stage_channels=[256, 256, 384, 384, 384, 512],
        stage_blocks=[2, 2, 2, 2, 2, 4],
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=None,
    bbox_head=dict(
        type='CornerPoolHead',
        num_classes=80,
        in_channels=256,
        num_stacks=2,
        pool_channels=128,
        feat_channels=256,
        pred_kernel_size=3,
        heatmap_bias=-2.19,
        corner_pool=dict(type='CornerPoolModule'),
        loss_heatmap=dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
        loss_embedding=dict(
            type='AssociativeEmbeddingPullPushLoss',
            pull_weight=0.1,
            push_weight=0.1,
            margin=1.0,
            eps=1e-4,
            push_diagonal='original',
            image_reduction='sum'),
        loss_offset=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
        corner_reduction='sum',
        stack_reduction='mean',
        offset_norm='objects'),
    train_cfg=dict(
        assigner=dict(
            type='GaussianHeatmapAssigner',
            keypoints=('top_left', 'bottom_right'),
            radius_formula='corrected',
            min_overlap=0.3,
            sigma_factor=6.0,
            clip_to='input')),
    test_cfg=dict(
        decoder=dict(
            type='CornerPairDecoder',
            topk=100,
            local_maximum_kernel=3,
            ae_threshold=0.5,
            num_dets=1000,
            keep_zero_size=True,
            clip_border=True),
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='CornerNetRandomCrop',
        crop_size=(511, 511),
        ratios=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3),
        border=128,
        pad_val=0),
    dict(type='Resize', scale=(511, 511), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomPCALighting', alphastd=0.1),
    dict(type='PackDetInputs')
]
# The original centres the image on a zero canvas of (h | 127, w | 127); `mean=0, std=1` makes mmdet's
# RandomCenterCropPad pad with zeros (it pads with `mean`) instead of the mean pixel.
test_crop_pad = dict(
    type='RandomCenterCropPad',
    crop_size=None,
    ratios=None,
    border=None,
    test_mode=True,
    test_pad_mode=['logical_or', 127],
    mean=[0, 0, 0],
    std=[1, 1, 1],
    to_rgb=False)
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args={{_base_.backend_args}}),
    test_crop_pad,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border'))
]
train_dataloader = dict(
    batch_size=5,
    num_workers=4,
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        filter_cfg=dict(filter_empty_gt=False),  # the original samples every training image
        pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# CheckedCocoMetric: mmdet's CocoMetric with mmkp's annotation rules applied to the file (docs/reliability.md)
val_evaluator = dict(type='CheckedCocoMetric', ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2.5e-4))
max_iters = 500000
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[450000], gamma=0.1)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=50000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# checkpoints written to a temporary file, then renamed (never left half-written)
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=10000, max_keep_ckpts=3))
# a NaN / inf loss term stops the run before the optimizer step (mmkp/engine/hooks.py, docs/reliability.md)
custom_hooks = [dict(type='FiniteLossHook')]
log_processor = dict(by_epoch=False)
# Adam lr 2.5e-4 was set for the total batch 49 (here 50).
auto_scale_lr = dict(enable=False, base_batch_size=50)

# `tools/test.py --tta`: the original's test (image + flipped image, raw pairs pooled, one soft-NMS).
tta_model = dict(
    type='CornerNetTTAModel',
    tta_cfg=dict(
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args={{_base_.backend_args}}),
    dict(
        type='TestTimeAug',
        transforms=[
            # the flip must come before RandomCenterCropPad, whose `border` meta is not flipped
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [test_crop_pad],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'flip', 'flip_direction',
                               'border'))
            ]
        ])
]
