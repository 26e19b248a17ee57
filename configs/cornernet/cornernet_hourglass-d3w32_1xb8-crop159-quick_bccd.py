# CornerNet on BCCD, small enough to train on a 2-core CPU (the quick config; tests/e2e/test_cornernet_learns.py).
# Kept from the paper config (cornernet_hourglass104_10xb5-500k_coco.py): the whole method -- two stacked
# hourglasses with intermediate supervision, corner pooling, heatmap / embedding / offset modules (3x3), targets
# (corrected radius, IoU 0.3, ratio read off the shapes), losses and their normalisation, the random scale crop
# with zero padding, flips, color jitter + PCA lighting, BGR mean / std, zero-padded (h | 127, w | 127) test
# input, pair decoding and Gaussian soft-NMS.
# Reduced for the CPU: an hourglass of depth 3 ("d3", 3 down-samplings per hourglass instead of 5) and width 32
# ("w32": channels 32-32-48-64 instead of 256-256-384-384-384-512, one residual per branch), corner-pool and
# prediction channels 16 / 16, images resized to 192 x 144 (BCCD is 640 x 480) and crops of 159 (border 32),
# vertical flips too (cells have no up / down), top 40 corners and 200 pairs; Adam lr 2e-3 with a 100-iteration
# warm-up and gradient clipping, 12 epochs (from scratch in minutes, where the paper trains 500k iterations at 2.5e-4).
_base_ = [
    '../_base_/datasets/bccd_detection.py', '../_base_/models/cornernet-bgr_preprocessor.py',
    '../_base_/schedules/quick_cpu.py'
]

model = dict(
    type='CornerNet',
    backbone=dict(
        type='HourglassNet',
        downsample_times=3,
        num_stacks=2,
        stage_channels=(32, 32, 48, 64),
        stage_blocks=(1, 1, 1, 1),
        feat_channel=32),
    neck=None,
    bbox_head=dict(
        type='CornerPoolHead', num_classes=3, in_channels=32, num_stacks=2, pool_channels=16, feat_channels=16),
    train_cfg=dict(
        assigner=dict(
            type='GaussianHeatmapAssigner',
            keypoints=('top_left', 'bottom_right'),
            radius_formula='corrected',
            min_overlap=0.3,
            clip_to='input')),
    test_cfg=dict(
        decoder=dict(type='CornerPairDecoder', topk=40, ae_threshold=0.5, num_dets=200),
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100))

img_scale = (192, 144)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='CornerNetRandomCrop', crop_size=(159, 159), ratios=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3), border=32),
    dict(type='Resize', scale=(159, 159), keep_ratio=False),
    # independent horizontal and vertical flips, each with probability 0.5 (a list of probabilities is one draw)
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25], direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='RandomColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomPCALighting', alphastd=0.1),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(
        type='RandomCenterCropPad',
        crop_size=None,
        ratios=None,
        border=None,
        test_mode=True,
        test_pad_mode=['logical_or', 127],
        mean=[0, 0, 0],
        std=[1, 1, 1],
        to_rgb=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'border'))
]
# no aspect-ratio grouping: the crops are square
train_dataloader = dict(batch_sampler=None, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# the schedule of ../_base_/schedules/quick_cpu.py as it is: Adam lr 2e-3, warm-up 100 iterations, 12 epochs with
# lr / 10 after 10 (about 15 minutes on the 2-core development machine, shared with other jobs)

# `tools/test.py --tta`: the original's flip test (image + flipped image, raw pairs pooled, one soft-NMS).
tta_model = dict(
    type='CornerNetTTAModel',
    tta_cfg=dict(
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=img_scale, keep_ratio=True)],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [test_pipeline[2]],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                               'flip_direction', 'border'))
            ]
        ])
]
