# The released FCOS_imprv_R_50_FPN_1x.pth (tianzhi0549/FCOS@a773f12 `README.md`: 38.7 AP on minival = val2017),
# converted with tools/model_converters/fcos_to_mmkp.py and tested as the original's
# `configs/fcos/fcos_imprv_R_50_FPN_1x.yaml` with `fcos_core/config/defaults.py` (same commit). The improvements
# (center-ness on the box tower, normalised regression targets x stride at test) are the parent config's; the yaml
# changes no test setting, so input (short side 800, max 1333, /32 padding, BGR 0-255, mean [102.9801, 115.9465,
# 122.7717], std 1), thresholds (0.05 before center-ness, top 1000 per level, sqrt score, class-aware NMS 0.6, top
# 100) are those of the paper model. The overrides (no ImageNet init, FrozenBatchNorm2d's eps=0, Pillow bilinear
# resize) and the deviations left (resize rounding, JPEG decoder, mmdet's x2 - x1 box widths against the
# original's x2 - x1 + 1, NMS after rescaling) are those of fcos_r50-caffe_fpn_gn-head_released-1x_coco.py.
_base_ = './fcos-imprv_r50-caffe_fpn_gn-head_8xb2-1x_coco.py'

model = dict(backbone=dict(init_cfg=None, norm_cfg=dict(type='BN', requires_grad=False, eps=0.0)))

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
