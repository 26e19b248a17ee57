# CenterNet (Objects as Points), DLA-34 from scratch on BCCD: a quick config next to the ResNet-18 one, same data,
# schedule and head settings (`centernet_r18_1xb8-quick_bccd.py`). Reduced for a CPU, against the paper's DLA-34:
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
