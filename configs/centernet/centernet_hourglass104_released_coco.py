# The released Hourglass-104 weights, ctdet_coco_hg.pth (xingyizhou/CenterNet@4c50fd3 `readme/MODEL_ZOO.md`,
# `src/lib/models/networks/large_hourglass.py`), converted with tools/model_converters/centernet_to_mmkp.py (which
# reads this config's model for the target keys and shapes)
# and tested as the original (`src/lib/detectors/ctdet.py`, `src/lib/utils/post_process.py`, `--keep_res`):
# - BGR images normalised with the original's BGR mean / std (bgr_to_rgb=False), batch 1, no resizing;
# - each image centred on a canvas of ((h | 127) + 1, (w | 127) + 1) (`opt.pad = 127` for the hourglass), filled
#   with 0 (black) before normalisation as the original's `cv2.warpAffine` (border value 0) leaves it. mmdet's
#   RandomCenterCropPad fills the canvas with its `mean` argument, set to 0 here; with mmdet's usual setting (the
#   mean pixel, as the training configs) every detection near a border would change;
# - boxes mapped back with the canvas offset (`border`) and the stride 4 (the affine back-mapping of
#   `ctdet_post_process`), top 100 peaks of the 3x3-max-pooled heatmap, no NMS, no clipping;
# - no flip (the original's default); `tools/test.py ... --tta` runs its `--flip_test` (heatmaps and sizes averaged).
# COCO val2017 reported by the original: 40.3 AP (no aug), 42.2 (flip), 45.1 (multi-scale + flip).
_base_ = './centernet_hourglass104_4xb6-crop512-50e_coco.py'

model = dict(backbone=dict(init_cfg=None))  # the weights come from the converted file

# the original's canvas: 0 (black) before normalisation; RandomCenterCropPad fills with `mean` (its only use of it)
black_pad = dict(
    type='RandomCenterCropPad',
    ratios=None,
    border=None,
    mean=[0, 0, 0],
    std={{_base_.std}},
    to_rgb=False,
    test_mode=True,
    test_pad_mode=['logical_or', 127],
    test_pad_add_pix=1)
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True), black_pad,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border'))
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# `tools/test.py --tta`: the original's `--flip_test` (see the parent config), on the same black canvas
tta_scales = (1.0, )
tta_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in tta_scales],
            [dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)],
            [black_pad],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'border', 'flip',
                               'flip_direction'))
            ]
        ])
]
