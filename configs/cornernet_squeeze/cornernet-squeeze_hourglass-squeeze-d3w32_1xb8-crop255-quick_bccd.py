# CornerNet-Squeeze on BCCD, small enough to train on a 2-core CPU (the quick config;
# tests/e2e/test_cornernet_learns.py).
# Kept from the paper config (cornernet-squeeze_hourglass-squeeze_4xb14-500k_coco.py): the whole method -- two
# stacked fire-module hourglasses (transposed-conv up-sampling, output stride 8) with intermediate supervision,
# corner pooling, 1x1 prediction modules, targets (corrected radius, IoU 0.3, ratio read off the shapes), losses and
# their normalisation, the random scale crop with zero padding, flips, color jitter + PCA lighting, BGR mean / std,
# zero-padded (h | 127, w | 127) single-view test input, pair decoding and Gaussian soft-NMS.
# Reduced for the CPU: hourglasses of depth 3 ("d3") and width 32 ("w32": channels 32-32-48-64 instead of
# 256-256-384-384-512, one fire module per branch), corner-pool / prediction channels 16, images resized to
# 256 x 192 (BCCD is 640 x 480) and crops of 255 (border 64), vertical flips too; top 40 corners and 200 pairs
# (the paper: 20 / 100 for COCO; a BCCD image holds up to ~30 cells); Adam lr 2e-3 with warm-up and clipping,
# 16 epochs (about 15 minutes on the 2-core development machine).
_base_ = '../cornernet/cornernet_hourglass-d3w32_1xb8-crop159-quick_bccd.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='HourglassSqueezeNet',
        downsample_times=3,
        num_stacks=2,
        stage_channels=(32, 32, 48, 64),
        stage_blocks=(1, 1, 1, 1),
        feat_channel=32),
    bbox_head=dict(pred_kernel_size=1))

img_scale = (256, 192)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='CornerNetRandomCrop', crop_size=(255, 255), ratios=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3), border=64),
    dict(type='Resize', scale=(255, 255), keep_ratio=False),
    # then, as the CornerNet quick config: independent horizontal and vertical flips, color jitter, PCA lighting, pack
    *_base_.train_pipeline[5:]
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    # then, as the CornerNet quick config: zero padding to (h | 127, w | 127), annotations, pack with the border meta
    *_base_.test_pipeline[2:]
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 16
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[13], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
