# CenterNet (Objects as Points), ResNet-101 + DCNv2 up-sampling neck: the paper's "ResDCN-101" setting.
# Faithful to xingyizhou/CenterNet@4c50fd3 `experiments/ctdet_coco_resdcn101.sh` and
# `src/lib/models/networks/resnet_dcn.py` (`resdcn_101`):
# - ResNet-101 from ImageNet (torchvision), the ResDCN-18 neck on its 2048 channels (3 x [DCN 3x3 -> BN -> ReLU ->
#   ConvTranspose 4x4 s2 -> BN -> ReLU], 256, 128, 64 channels), head_conv 64;
# - batch 96 (the original: 8 GPUs, chunks [5, 13 x 7]; here 8 x 12) with Adam lr 3.75e-4 (the script's value:
#   5e-4 scaled linearly from batch 128 to 96), 140 epochs, lr / 10 at epochs 90 and 120 (`opts.py` defaults);
# - input pipeline, targets, losses and test as the ResDCN-18 config (pad (h | 31) + 1, top 100, no NMS).
# COCO val2017 reported by the original: 34.6 AP (no aug), 36.2 (flip, `--tta`), 39.3 (multi-scale).
_base_ = './centernet_r18-dcnv2_6xb19-crop512-140e_coco.py'

model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')),
    neck=dict(in_channels=2048))

train_dataloader = dict(batch_size=12)
optim_wrapper = dict(optimizer=dict(lr=3.75e-4))
# Adam lr 3.75e-4 was set for the total batch 96.
auto_scale_lr = dict(enable=False, base_batch_size=96)
