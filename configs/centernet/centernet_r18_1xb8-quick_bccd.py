# CenterNet (Objects as Points), ResNet-18 from scratch on BCCD (the quick-start, `make quickstart`, trains its DLA-34
# sibling `centernet_dla34_1xb8-quick_bccd.py`, which builds on this file). Trains on a 2-core CPU in about 7
# minutes. Deviations from the paper config, all for speed on a CPU:
# - input 320x240 (images are 640x480), no crop; horizontal and vertical flips (cells have no up/down);
# - ResNet-18 trained from scratch (no ImageNet weights here), plain (non-DCN) up-sampling neck;
# - batch 8, Adam lr 1e-3 with warm-up and gradient clipping, 11 epochs (lr / 10 after 9): about 8 minutes here.
# Kept from the original: head, targets (original radius formula, IoU 0.7, sigma = d / 6), losses and decoding.
_base_ = [
    '../_base_/datasets/bccd_detection_320x240.py', '../_base_/models/imagenet-rgb_preprocessor.py',
    '../_base_/schedules/quick_cpu.py'
]

model = dict(
    type='CenterNet',
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

max_epochs = 11
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[9], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
# seeded, so that runs reproduce the numbers in the README (same torch build and thread count)
randomness = dict(seed=0)
