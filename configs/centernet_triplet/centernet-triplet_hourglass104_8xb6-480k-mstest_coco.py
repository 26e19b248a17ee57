# CenterNet511-104 multi-scale test (Duankaiwen/CenterNet@3ad3a10 `config/CenterNet-104-multi_scale.json`,
# `test/coco.py`): scales 0.6, 1, 1.2, 1.5, 1.8, each with its flip; the raw pairs of the ten views are pooled, the
# center-region check reads the centers of scale 1 only (the image and its flip: TripletHead.center_views; a scale
# list without 1 is refused), then soft-NMS merge (Gaussian, sigma 0.5, weight_exp 10) and 100 per image.
# Run with `tools/test.py --tta`. Training is that of ./centernet-triplet_hourglass104_8xb6-480k_coco.py.
# Deviation: mmdet's Resize rounds the scaled size (int(w * s + 0.5)) where the original truncates (int(w * s)).
_base_ = './centernet-triplet_hourglass104_8xb6-480k_coco.py'

tta_model = dict(
    type='CornerNetTTAModel',
    tta_cfg=dict(
        nms=dict(
            type='soft_nms_merge',
            iou_threshold=0.5,
            sigma=0.5,
            min_score=0.001,
            method='gaussian',
            offset=1,
            weight_exp=10),
        max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args={{_base_.backend_args}}),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in (0.6, 1.0, 1.2, 1.5, 1.8)],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [{{_base_.test_crop_pad}}],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                               'flip_direction', 'border'))
            ]
        ])
]
