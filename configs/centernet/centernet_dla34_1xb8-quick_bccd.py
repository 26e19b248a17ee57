# CenterNet (Objects as Points), DLA-34 from scratch on BCCD: the quick-start config (`make quickstart`), next to the
# ResNet-18 one (`centernet_r18_1xb8-quick_bccd.py`): same data (320x240, flips), head settings, targets, losses,
# decoding and optimiser; 8 epochs instead of 11 (about 7.1 min of training on the 2-core development machine,
# BCCD val mAP 0.523, where ResNet-18 reaches 0.372 in 11 epochs; configs/centernet/README.md).
# Reduced for a CPU, against the paper's DLA-34:
# - the neck uses plain 3x3 convolutions instead of modulated deformable ones (`use_dcn=False`);
# - head branches of 64 channels instead of 256 (`feat_channels`);
# - no ImageNet weights (from scratch), input 320x240 padded to a multiple of 32 by the data preprocessor.
# The DLA-34 backbone itself is the full one.
_base_ = './centernet_r18_1xb8-quick_bccd.py'

model = dict(
    backbone=dict(_delete_=True, type='DLA', depth=34, norm_cfg=dict(type='BN'), init_cfg=None),
    neck=dict(
        _delete_=True,
        type='DLANeck',
        in_channels=(16, 32, 64, 128, 256, 512),
        first_level=2,
        last_level=5,
        use_dcn=False),
    bbox_head=dict(in_channels=64, feat_channels=64, reg_init_std=None))

# 8 epochs (208 iterations of 8), lr / 10 for the last two: within the quick-start's 8 minutes of training on two
# CPU cores (DLA-34 takes 1.9-2.1 s per iteration there, ResNet-18 about 1.3 s; 9 epochs took 7.5 min on one day
# and 8.4 min on another, so the quick-start keeps a margin)
max_epochs = 8
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[6], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
