# Fine-tuning the released CornerNet Hourglass-104 COCO weights on a custom COCO-format data set (default: BCCD),
# after the authors' advice for new classes (princeton-vl/CornerNet-Lite#14: copy every trained parameter except the
# `{tl,br}_heats` layers into a freshly initialised model). One difference: here only the 80-class output conv of
# those layers is re-initialised, their 3x3 conv (256 -> 256, not class-specific) is loaded; the README shows how to
# drop the whole `{tl,br}_heats` from the converted file to follow the authors exactly.
# 1. Convert the released weights (CornerNet_500000.pkl of princeton-vl/CornerNet-Lite@6a54505):
#   python tools/model_converters/cornernet_to_mmkp.py CornerNet_500000.pkl checkpoints/cornernet_hg104_coco.pth
# 2. Set `data_root` and `classes` below, then:
#   python tools/train.py configs/cornernet/cornernet_hourglass104_finetune_custom.py
# What is kept and what is re-initialised: mmengine's `load_from` loads the checkpoint with strict=False after the
# model's own init (Runner.train: `_init_model_weights()`, then `load_or_resume()`); a tensor whose shape differs from
# the model's ("size mismatch", logged as a warning by mmengine/runner/checkpoint.py::load_state_dict) is not copied,
# so it keeps the head's init. With `num_classes` != 80 those are exactly the class-specific layers: the last 1x1
# conv of the top-left and bottom-right heatmap branches of both stacks (8 tensors; weight (num_classes, 256, 1, 1):
# PyTorch's default init; bias (num_classes, ): -2.19, the head's `heatmap_bias`). Backbone, corner pooling,
# embedding and offset branches are loaded. With exactly 80 classes of another label set nothing is skipped:
# re-initialise by hand (see the README).
_base_ = './cornernet_hourglass104_released-500k_coco.py'

# the converted COCO checkpoint (step 1 above)
load_from = 'checkpoints/cornernet_hg104_coco.pth'
# The data: one COCO-format folder
#   data_root/annotations/instances_train.json, data_root/annotations/instances_val.json,
#   data_root/images/ (every image of both jsons; `file_name` relative to it)
data_root = '{{$MMKP_DATA:data}}/bccd/'
classes = ('RBC', 'WBC', 'Platelets')  # the names of the json's categories, in the order of their ids
num_classes = len(classes)
metainfo = dict(classes=classes)

model = dict(bbox_head=dict(num_classes=num_classes))

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    dataset=dict(
        type='CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0)))
val_dataloader = dict(
    dataset=dict(
        type='CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/')))
test_dataloader = val_dataloader
val_evaluator = dict(type='CheckedCocoMetric', metric='bbox', ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Short schedule: only the heatmap outputs start afresh, everything else from 500k COCO iterations, so 1% of the
# original's schedule: 5,000 iterations of 8 (about 195 epochs of BCCD's 205 training images; scale with the data set),
# lr / 10 after 4,000, no warm-up (as the original), the original's Adam lr scaled linearly to the batch:
# 2.5e-4 x 8 / 50 = 4e-5. Validation and a checkpoint every 1,000 iterations, keeping the best bbox mAP. Training
# pipeline (511 crops, scale 0.6-1.3, flip, colour jitter) and single-view test are those of the released model
# (`tools/test.py --tta` for the authors' flip test).
max_iters = 5000
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=4e-5))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[4000], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
default_hooks = dict(
    checkpoint=dict(
        type='AtomicCheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2, save_best='coco/bbox_mAP',
        rule='greater'))
auto_scale_lr = dict(enable=False, base_batch_size=8)
