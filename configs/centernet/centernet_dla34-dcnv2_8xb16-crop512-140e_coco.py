# CenterNet (Objects as Points), DLA-34 with the DCN up-sampling neck (DLAUp + IDAUp): the paper's "DLA-34 1x".
# Faithful to xingyizhou/CenterNet@4c50fd3 `experiments/ctdet_coco_dla_1x.sh`, `src/lib/opts.py` and
# `src/lib/models/networks/pose_dla_dcn.py`:
# - batch 128 (8 GPUs x 16), Adam lr 5e-4, 140 epochs, lr / 10 at epochs 90 and 120, no warm-up, no clipping;
# - DLA-34 from ImageNet (ucbdrive/dla `dla34-ba72cf86.pth`), neck with modulated deformable convs, output stride 4;
# - head_conv 256 (3x3 + ReLU -> 1x1), heatmap bias -2.19, size / offset convs PyTorch default with bias 0;
# - input pipeline, targets, losses and test (top 100, no NMS, `--keep_res` pad (h | 31) + 1) as the ResDCN-18 config.
# COCO val2017 reported by the original: 36.3 AP (no aug), 38.2 (flip), 40.7 (multi-scale: the `_ms-tta` config
# of the 2x schedule shows how).
_base_ = './centernet_r18-dcnv2_6xb19-crop512-140e_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DLA',
        depth=34,
        norm_cfg=dict(type='BN'),
        init_cfg=dict(type='Pretrained', checkpoint='http://dl.yf.io/dla/models/imagenet/dla34-ba72cf86.pth')),
    neck=dict(
        _delete_=True,
        type='DLANeck',
        in_channels=(16, 32, 64, 128, 256, 512),
        first_level=2,
        last_level=5,
        use_dcn=True),
    bbox_head=dict(in_channels=64, feat_channels=256, reg_init_std=None))

train_dataloader = dict(batch_size=16)
# Adam lr 5e-4 was set for the total batch 128.
auto_scale_lr = dict(enable=False, base_batch_size=128)
