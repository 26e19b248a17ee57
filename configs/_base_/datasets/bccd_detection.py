# BCCD (blood cell detection): 205 train / 87 val / 72 test images, 640x480, 3 classes, COCO json.
# The data lives outside the repo: $MMKP_DATA/bccd (tools and `make` default MMKP_DATA to ../shared/data when it
# exists, else data/).
# mmkp's CocoDataset: annotation problems are named and counted, never dropped silently (mmkp/datasets/coco.py)
dataset_type = 'CheckedCocoDataset'
data_root = '{{$MMKP_DATA:data}}/bccd/'
metainfo = dict(classes=('RBC', 'WBC', 'Platelets'), palette=[(220, 20, 60), (0, 0, 230), (255, 215, 0)])
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(640, 480), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(640, 480), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
# mmdet's CocoMetric with the dataset's annotation rules applied to the file it reads: its ground truth is the boxes
# the dataset uses (an ignored box is no ground truth, a clipped one is clipped; mmkp/evaluation/metrics/coco_metric.py)
val_evaluator = dict(
    type='CheckedCocoMetric', ann_file=data_root + 'annotations/instances_val.json', metric='bbox', format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
