# CenterNet DLA-34 2x with the original's multi-scale + flip test (`--flip_test --test_scales 0.5,0.75,1,1.25,1.5`,
# xingyizhou/CenterNet@4c50fd3 `experiments/ctdet_coco_dla_2x.sh`), use with `tools/test.py --tta`: per scale the
# flip-averaged maps decoded (top 100), boxes in original pixels, scales concatenated, per-class Gaussian soft-NMS
# (sigma 0.5, discard < 0.001), top 100. Original: 41.7 AP val2017.
_base_ = './centernet_dla34-dcnv2_8xb16-crop512-230e_coco.py'

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
