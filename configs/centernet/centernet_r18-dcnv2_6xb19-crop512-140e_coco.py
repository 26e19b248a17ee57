# CenterNet (Objects as Points), ResNet-18 + DCNv2 up-sampling neck: the paper's "ResDCN-18" setting.
# Faithful to xingyizhou/CenterNet@4c50fd3 `experiments/ctdet_coco_resdcn18.sh` and `src/lib/opts.py`:
# - batch 114 (the original: 4 GPUs with chunks [18, 32, 32, 32] under DataParallel; here 6 x 19 = 114),
#   Adam lr 5e-4, 140 epochs, lr / 10 at epochs 90 and 120, no warm-up, no gradient clipping;
# - input 512, random scale 0.6-1.3 crop (border 128), flip 0.5, CornerNet color jitter + PCA lighting;
# - CornerNet's BGR mean/std on BGR images (the original feeds BGR to an ImageNet RGB backbone: a quirk kept);
# - targets: original radius formula with IoU 0.7, sigma = d / 6, boxes clipped to the output map;
# - losses: focal (weight 1), size L1 0.1, offset L1 1, each normalised as the original;
# - test: original resolution padded to (h | 31) + 1 (`--keep_res`), top 100 peaks, no NMS, no clipping.
# COCO val2017 reported by the original: 28.1 AP (no aug), 30.0 (flip), 33.2 (multi-scale).
_base_ = ['mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
data_root = '{{$MMKP_DATA:data}}/coco/'

mean = [104.01362, 114.03422, 119.91659]  # 255 * [0.40789654, 0.44719302, 0.47026115], BGR
std = [73.60276, 69.89082, 70.91508]  # 255 * [0.28863828, 0.27408164, 0.27809835], BGR
model = dict(
    type='CenterNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=mean, std=std, bgr_to_rgb=False),
    backbone=dict(
        type='ResNet',
        depth=18,
        norm_eval=False,
        norm_cfg=dict(type='BN'),
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(
        type='CTResNetNeck',
        in_channels=512,
        num_deconv_filters=(256, 128, 64),
        num_deconv_kernels=(4, 4, 4),
        use_dcn=True),
    bbox_head=dict(
        type='CenterHeatmapHead',
        num_classes=80,
        in_channels=64,
        feat_channels=64,
        heatmap_bias=-2.19,
        reg_init_std=0.001,
        loss_heatmap=dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
        loss_size=dict(type='L1Loss', loss_weight=0.1),
        loss_offset=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='GaussianHeatmapAssigner',
            keypoints=('center', ),
            radius_formula='original',
            min_overlap=0.7,
            sigma_factor=6.0,
            clip_to='output')),
    test_cfg=dict(
        decoder=dict(type='CenterHeatmapDecoder', topk=100, local_maximum_kernel=3, clip_border=False),
        max_per_img=100,
        nms=None))

train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomCenterCropPad',
        crop_size=(512, 512),
        ratios=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3),
        border=128,
        mean=mean,
        std=std,
        to_rgb=False,
        test_pad_mode=None),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomPCALighting', alphastd=0.1),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(
        type='RandomCenterCropPad',
        ratios=None,
        border=None,
        mean=mean,
        std=std,
        to_rgb=False,
        test_mode=True,
        test_pad_mode=['logical_or', 31],
        test_pad_add_pix=1),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border'))
]
train_dataloader = dict(
    batch_size=19,
    num_workers=4,
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        filter_cfg=dict(filter_empty_gt=False),  # the original trains on every train2017 image
        pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# CheckedCocoMetric: mmdet's CocoMetric with mmkp's annotation rules applied to the file (docs/reliability.md)
val_evaluator = dict(type='CheckedCocoMetric', ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=5e-4))
max_epochs = 140
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[90, 120], gamma=0.1)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# checkpoints written to a temporary file, then renamed (never left half-written)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=10, max_keep_ckpts=3))
# a NaN / inf loss term stops the run before the optimizer step (mmkp/engine/hooks.py, docs/reliability.md)
custom_hooks = [dict(type='FiniteLossHook')]
# Adam lr 5e-4 was set for the total batch 114.
auto_scale_lr = dict(enable=False, base_batch_size=114)

# Test-time augmentation (`tools/test.py --tta`), the original's `--flip_test` (xingyizhou/CenterNet@4c50fd3
# `src/lib/detectors/ctdet.py`): heatmap scores and sizes of the image and its mirror averaged, offsets of the image,
# one decoding; no NMS at one scale. Original: 30.0 AP val2017 with flip. Multi-scale: the `_ms-tta` config.
tta_model = dict(
    type='CenterNetTTAModel',
    tta_cfg=dict(
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1),
        nms_single_scale=False,
        max_per_img=100))
tta_scales = (1.0, )
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
                    mean=mean,
                    std=std,
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
