# CenterNet (Objects as Points), Hourglass-104: the paper's "Hourglass-104" setting (its best model).
# Faithful to xingyizhou/CenterNet@4c50fd3 `experiments/ctdet_coco_hg.sh`, `src/lib/opts.py` and
# `src/lib/models/networks/large_hourglass.py`:
# - Hourglass-104 with 2 stacks, the backbone of CornerNet (mmdet `HourglassNet` defaults: 5 down-samplings,
#   channels 256, 256, 384, 384, 384, 512, blocks 2, 2, 2, 2, 2, 4), output stride 4, no neck;
# - a head per stack (3x3 conv 256 + ReLU -> 1x1), intermediate supervision: losses averaged over the 2 stacks, the
#   last stack decoded; heatmap bias -2.19, size / offset convs PyTorch default init (bias 0 here);
# - batch 24 (the original: 5 GPUs, chunks [4, 5, 5, 5, 5]; here 4 x 6), Adam lr 2.5e-4, 50 epochs, lr / 10 at
#   epoch 40 (`readme/MODEL_ZOO.md`: about 250k iterations), no warm-up, no clipping;
# - input pipeline, targets and losses as the ResDCN-18 config; test at the original resolution padded to
#   (h | 127) + 1 (`--keep_res`, `opt.pad = 127` for the hourglass), top 100 peaks, no NMS.
# Not reproduced: the original starts from the ExtremeNet weights (`--load_model ExtremeNet_500000.pth`); mmkp has no
# converter for them, so the backbone starts from scratch here (`load_from` a converted file if you have one).
# COCO val2017 reported by the original: 40.3 AP (no aug), 42.2 (flip, `--tta`), 45.1 (multi-scale).
_base_ = './centernet_r18-dcnv2_6xb19-crop512-140e_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='HourglassNet',
        downsample_times=5,
        num_stacks=2,
        stage_channels=(256, 256, 384, 384, 384, 512),
        stage_blocks=(2, 2, 2, 2, 2, 4),
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=None,
    bbox_head=dict(in_channels=256, feat_channels=256, num_stacks=2, reg_init_std=None))

# the hourglass needs sizes that are multiples of 128: the original pads to (h | 127) + 1 at test
test_pad = dict(
    type='RandomCenterCropPad',
    ratios=None,
    border=None,
    mean={{_base_.mean}},
    std={{_base_.std}},
    to_rgb=False,
    test_mode=True,
    test_pad_mode=['logical_or', 127],
    test_pad_add_pix=1)
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True), test_pad,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border'))
]
train_dataloader = dict(batch_size=6)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2.5e-4))
max_epochs = 50
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[40], gamma=0.1)]
train_cfg = dict(max_epochs=max_epochs)
# Adam lr 2.5e-4 was set for the total batch 24.
auto_scale_lr = dict(enable=False, base_batch_size=24)

# flip test (`tools/test.py --tta`) as the parent's, padded as above
tta_scales = (1.0, )
tta_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in tta_scales],
            [dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)],
            [test_pad],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'border', 'flip',
                               'flip_direction'))
            ]
        ])
]
