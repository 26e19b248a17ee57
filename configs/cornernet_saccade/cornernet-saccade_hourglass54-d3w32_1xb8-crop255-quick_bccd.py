# CornerNet-Saccade on BCCD, small enough to train on a 2-core CPU (the quick config).
# Kept from the paper config (cornernet-saccade_hourglass54_4xb12-500k_coco.py): the whole training method --
# stacked 3-level hourglasses with intermediate supervision and merge outputs, corner pooling, 3x3 prediction
# modules, attention branches on the merges, the object-centric 255 crop (SaccadeObjectCrop: reference object
# rescaled within its size bucket, jitter, zero padding, flip, ignore rule for small / cut objects), corner targets
# with IoU 0.5 and the ignore mask, binary attention targets per size range, the losses and their normalisation
# (attention / #stacks twice), color jitter + PCA lighting, BGR mean / std; the saccade test (CornerNetSaccade:
# views 192 / 255, attention -> zoomed crops, per-crop decoding with border rejection, Gaussian soft-NMS sigma 0.7)
# with the paper's procedure (its thresholds and pair counts adapted to BCCD, see test_cfg).
# Reduced for the CPU: 2 stacks instead of 3, width 32 ("w32": channels 32-48-48-64 instead of 256-384-384-512),
# corner-pool / prediction / attention channels 16; Adam lr 4e-3 with warm-up and gradient clipping, 16 epochs
# (the schedule of ../_base_/schedules/quick_cpu.py, longer, higher lr); half of the training samples are the test's
# downsized views instead of object crops (train_pipeline).
_base_ = [
    '../_base_/datasets/bccd_detection.py', '../_base_/models/cornernet-bgr_preprocessor.py',
    '../_base_/schedules/quick_cpu.py'
]

model = dict(
    type='CornerNetSaccade',
    backbone=dict(
        type='Hourglass54',
        downsample_times=3,
        num_stacks=2,
        stage_channels=(32, 48, 48, 64),
        stage_blocks=(1, 1, 1, 1),
        feat_channel=32),
    neck=None,
    bbox_head=dict(
        type='SaccadeHead',
        num_classes=3,
        in_channels=32,
        num_stacks=2,
        pool_channels=16,
        feat_channels=16,
        attention_channels=(48, 48, 32),
        attention_feat_channels=16),
    train_cfg=dict(
        assigner=dict(
            type='GaussianHeatmapAssigner',
            keypoints=('top_left', 'bottom_right'),
            radius_formula='corrected',
            min_overlap=0.5,
            clip_to='input'),
        attention_assigner=dict(type='SaccadeAttentionAssigner')),
    # test settings for BCCD's many objects per image (13.7 on average in train, up to 30) and for a model trained
    # for minutes (the paper's values in brackets, kept by the COCO configs): 50 corners per type and 50 pairs per
    # view / crop (12 / 12: fewer pairs than objects), attention cells above 0.1 (0.3), coarse detections of the
    # views kept above 0.1 (0.3) and turned into crop locations above 0.3 (0.5). Everything else is the paper's test.
    test_cfg=dict(
        decoder=dict(type='CornerPairDecoder', topk=50, ae_threshold=0.3, num_dets=50, reject_border=True),
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.7, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100,
        saccade=dict(
            init_sizes=(192, 255),
            att_threshold=0.1,
            coarse_threshold=0.1,
            ref_threshold=0.3,
            k_max=30,
            crop_batch=32)))

# half of the samples are the paper's object-centric crops (objects at the zooms of the saccade crops), half the two
# downsized views of the test (long side 192 / 255, zero padded to 255, flipped: objects at the views' zoom), which
# a few CPU minutes of object crops alone do not teach (README, "Memorisation experiments")
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomChoice',
        transforms=[[dict(type='SaccadeObjectCrop', crop_size=(255, 255))],
                    [
                        dict(type='RandomChoiceResize', scales=[(192, 192), (255, 255)], keep_ratio=True),
                        dict(type='RandomFlip', prob=0.5),
                        dict(type='Pad', size=(255, 255), pad_val=dict(img=0))
                    ]],
        prob=[0.5, 0.5]),
    dict(type='RandomColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomPCALighting', alphastd=0.1),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
# no aspect-ratio grouping: the crops are square
train_dataloader = dict(batch_sampler=None, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# 16 epochs (416 iterations of 8, lr / 10 after 14) so that training stays within 5 minutes on the 2-core
# development machine (idle); Adam lr 4e-3, the lr of the memorisation runs (README)
max_epochs = 16
optim_wrapper = dict(optimizer=dict(lr=4e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[14], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
