# The released FCOS_R_50_FPN_1x.pth (tianzhi0549/FCOS@a773f12 `README.md`: 37.1 AP on minival = val2017),
# converted with tools/model_converters/fcos_to_mmkp.py (which reads this config's model for the target keys and
# shapes) and tested as the original's `configs/fcos/fcos_R_50_FPN_1x.yaml` with `fcos_core/config/defaults.py`
# (same commit). What the parent config already does as the original at test:
# - input: short side 800, long side at most 1333 (MIN_SIZE_TEST / MAX_SIZE_TEST), padded to a multiple of 32
#   (SIZE_DIVISIBILITY); BGR 0-255 (TO_BGR255), mean [102.9801, 115.9465, 122.7717], std 1 (PIXEL_MEAN / PIXEL_STD);
# - class probability > 0.05 before center-ness (INFERENCE_TH), top 1000 per level by cls * center-ness
#   (PRE_NMS_TOP_N), score sqrt(cls * center-ness), class-aware NMS 0.6 (NMS_TH), top 100 (DETECTIONS_PER_IMG);
#   no flip / multi-scale (TEST.BBOX_AUG.ENABLED False).
# Overridden here:
# - the weights come from the converted file (no ImageNet init);
# - the frozen BNs compute the original's FrozenBatchNorm2d (`fcos_core/layers/batch_norm.py`): x * w / sqrt(v)
#   + b - m * w / sqrt(v), no epsilon (mmdet's BN adds eps=1e-5 to v): eps=0;
# - the test resize with Pillow's bilinear filter, as the original's `torchvision.transforms.functional.resize` of
#   a PIL image (`fcos_core/data/transforms/transforms.py`); mmcv's default is OpenCV's.
# Left as they are (deviations, each small; not measured against the original here, no COCO val2017 here):
# - resize rounding: the original's long side is int(800 * long / short) (truncated; a capped short side is
#   round(1333 * short / long)), mmcv rounds both to the nearest: a side may differ by 1 px;
# - images decoded by OpenCV (the original: PIL), the same JPEG decoder family, possibly not bit-identical;
# - boxes: the original clips to [0, w - 1] and reports COCO widths x2 - x1 + 1 (maskrcnn-benchmark's
#   TO_REMOVE = 1); mmdet clips to [0, w] and reports x2 - x1: each box of these weights comes out 1 px narrower and
#   shorter (in the original image) than the original reports, as for every Detectron-era model run in mmdet 3;
# - NMS after rescaling to the original image (see the parent config).
_base_ = './fcos_r50-caffe_fpn_gn-head_8xb2-1x_coco.py'

model = dict(backbone=dict(init_cfg=None, norm_cfg=dict(type='BN', requires_grad=False, eps=0.0)))

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
