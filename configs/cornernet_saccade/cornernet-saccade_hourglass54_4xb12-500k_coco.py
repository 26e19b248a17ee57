# CornerNet-Saccade (Law et al., CornerNet-Lite, 2019), Hourglass-54, COCO: the CornerNet-Lite
# `configs/CornerNet_Saccade.json` setting (princeton-vl/CornerNet-Lite@6a54505, `core/models/CornerNet_Saccade.py`,
# `core/sample/cornernet_saccade.py`, `core/models/py_utils/losses.py`). Faithful:
# - model: Hourglass54 (3 stacks of 3-level hourglasses, channels 256-384-384-512, one residual per branch, the
#   CornerNet stem; 89,884,544 parameters) + SaccadeHead (CornerNet corner branches on every stack, attention branches
#   on the merge outputs 16x16 / 32x32 / 64x64, biases -2.19); 116,969,339 parameters, as the released model;
#   PyTorch default init, trained from scratch;
# - data: SaccadeObjectCrop (a reference object rescaled within its size bucket, 255 crop centred on it +- 15 px or
#   keeping it inside, zero padding, flip x -> 255 - x - 1; objects under 16 px or more than half cut -> ignored;
#   rand_crop False as the original's effective setting), color jitter 0.4 + PCA lighting 0.1 always, BGR mean / std;
# - targets: corners on 64 x 64 (ratio 64 / 255 read off the shapes), corrected radius with IoU 0.5, sigma d / 6,
#   ignore mask under the ignored objects' Gaussians; attention: one cell per object in the map of its long side
#   (96-256 -> 16x16, 32-96 -> 32x32, 0-32 -> 64x64, inclusive ends);
# - losses: masked focal (corners), focal (attention, divided by the number of stacks twice), pull / push 0.1,
#   offsets SmoothL1 / (#objects + 1e-4), everything / #stacks;
# - batch 4 x 12 = 48, Adam lr 2.5e-4, 500k iterations, lr / 10 at 450k.
# - test: the saccade procedure (CornerNetSaccade, test_cfg.saccade): downsized views 192 / 255, attention > 0.3
#   -> locations at zoom 1 / 2 / 4, coarse detections > 0.3 kept and (> 0.5) turned into locations (long side to
#   192 / 64 / 24), location suppression (min axis distance <= 16 / zoom, zoom ratio in [0.8, 1.2]), the first 30
#   locations, zoomed 255 crops, per-crop decoding (top 12 corners, ae 0.3, 12 pairs, border rejection), merge,
#   per-class Gaussian soft-NMS sigma 0.7, 100 per image; on the original image (no resize).
# Deviations (configs/cornernet_saccade/README.md):
# - crops are bilinear resamplings of the full window by mmkp.ops.saccade_crop (the original's window is one pixel
#   short for odd sides; its back-mapping uses the nominal zoom): differences below one crop pixel;
# - crowd boxes are ignored objects in mmdet (the original loads them as ordinary objects); they still get attention
#   targets, as every object of the crop does.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/models/cornernet-bgr_preprocessor.py'
]
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

model = dict(
    type='CornerNetSaccade',
    backbone=dict(
        type='Hourglass54',
        downsample_times=3,
        num_stacks=3,
        stage_channels=(256, 384, 384, 512),
        stage_blocks=(1, 1, 1, 1),
        feat_channel=256,
        with_merges=True),
    neck=None,
    bbox_head=dict(
        type='SaccadeHead',
        num_classes=80,
        in_channels=256,
        num_stacks=3,
        pool_channels=128,
        feat_channels=256,
        pred_kernel_size=3,
        heatmap_bias=-2.19,
        attention_channels=(384, 384, 256),
        attention_feat_channels=256,
        attention_bias=-2.19,
        loss_heatmap=dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
        loss_attention=dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
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
        attention_stack_reduction='mean_twice',
        offset_norm='objects',
        mask_ignored=True),
    train_cfg=dict(
        assigner=dict(
            type='GaussianHeatmapAssigner',
            keypoints=('top_left', 'bottom_right'),
            radius_formula='corrected',
            min_overlap=0.5,
            sigma_factor=6.0,
            clip_to='input'),
        attention_assigner=dict(
            type='SaccadeAttentionAssigner', ranges=((96, 256), (32, 96), (0, 32)), strides=(16, 8, 4))),
    test_cfg=dict(
        decoder=dict(
            type='CornerPairDecoder',
            topk=12,
            local_maximum_kernel=3,
            ae_threshold=0.3,
            num_dets=12,
            keep_zero_size=True,
            clip_border=True,
            reject_border=True),
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.7, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100,
        saccade=dict(
            init_sizes=(192, 255),
            att_threshold=0.3,
            att_zooms=(1, 2, 4),
            att_strides=(16, 8, 4),
            att_nms_kernel=3,
            max_view_zoom=2.0,
            max_zoom=4.0,
            coarse_threshold=0.3,
            ref_threshold=0.5,
            ref_bounds=(96, 32),
            ref_sizes=(192, 64, 24),
            location_distance=16.0,
            location_zoom_ratio=(0.8, 1.2),
            k_max=30,
            crop_size=255,
            crop_batch=32)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='SaccadeObjectCrop',
        crop_size=(255, 255),
        rand_scales=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1),
        rand_center=True,
        rand_crop=False,
        min_scale=16,
        min_visible=0.5,
        flip_prob=0.5,
        flip_mode='original'),
    dict(type='RandomColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomPCALighting', alphastd=0.1),
    dict(type='PackDetInputs')
]
# the saccade test reads the original image (views and crops are cut by the detector)
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=12,
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
# Adam lr 2.5e-4 was set for the total batch 48 (4 GPUs x 12).
auto_scale_lr = dict(enable=False, base_batch_size=48)
