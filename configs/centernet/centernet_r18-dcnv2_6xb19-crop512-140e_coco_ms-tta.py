# CenterNet ResDCN-18 with the original's multi-scale + flip test (`--flip_test --test_scales 0.5,0.75,1,1.25,1.5`,
# xingyizhou/CenterNet@4c50fd3 `experiments/ctdet_coco_resdcn18.sh`): each scale flip-averaged and decoded (top 100),
# boxes mapped to original pixels, scales concatenated, per-class Gaussian soft-NMS (sigma 0.5, discard < 0.001),
# top 100. Same training as the base config; use with `tools/test.py --tta`. Original: 33.2 AP val2017.
_base_ = './centernet_r18-dcnv2_6xb19-crop512-140e_coco.py'

tta_scales = (0.5, 0.75, 1.0, 1.25, 1.5)
tta_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in tta_scales],
            [dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)],
            [
                dict(
                    type='RandomCenterCropPad',
                    ratios=None,
                    border=None,
                    mean={{_base_.mean}},
                    std={{_base_.std}},
                    to_rgb=False,
                    test_mode=True,
                    test_pad_mode=['logical_or', 31],
                    test_pad_add_pix=1)
            ],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'border', 'flip',
                               'flip_direction'))
            ]
        ])
]
