# CornerNet Hourglass-104 multi-scale test (princeton-vl/CornerNet-Lite@6a54505 `configs/CornerNet-multi_scale.json`):
# scales 0.5, 0.75, 1, 1.25, 1.5, each with its flip; the raw pairs of the ten views are pooled and merged by
# soft-NMS merge (Gaussian, sigma 0.5, weight_exp 10), then 100 per image. Run with `tools/test.py --tta`.
# Training is that of cornernet_hourglass104_10xb5-500k_coco.py. Deviation: mmdet's Resize rounds the scaled size
# (int(w * s + 0.5)) where the original truncates (int(w * s)), and maps boxes back with the resulting scale factor.
_base_ = './cornernet_hourglass104_10xb5-500k_coco.py'

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
            [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in (0.5, 0.75, 1.0, 1.25, 1.5)],
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
