# Fine-tuning the released CenterNet ResDCN-18 COCO weights on a custom COCO-format data set (default: BCCD).
# 1. Convert the released weights (xingyizhou/CenterNet@4c50fd3 `readme/MODEL_ZOO.md`, ctdet_coco_resdcn18.pth):
#   python tools/model_converters/centernet_to_mmkp.py ctdet_coco_resdcn18.pth checkpoints/centernet_r18-dcnv2_coco.pth
# 2. Set `data_root` and `classes` below, then:
#   python tools/train.py configs/centernet/centernet_r18-dcnv2_finetune_custom.py
# What is kept and what is re-initialised: mmengine's `load_from` loads the checkpoint with strict=False after the
# model's own init (Runner.train: `_init_model_weights()`, then `load_or_resume()`); a tensor whose shape differs from
# the model's ("size mismatch", logged as a warning by mmengine/runner/checkpoint.py::load_state_dict) is not copied,
# so it keeps the head's init. With `num_classes` != 80 those are exactly the class-specific layers, the last 1x1 conv
# of the heatmap branch (weight (num_classes, 64, 1, 1): PyTorch's default init; bias (num_classes, ): -2.19, the
# head's `heatmap_bias`); backbone, neck, size and offset branches are loaded. The original fine-tunes the same way
# (xingyizhou/CenterNet@4c50fd3 `src/lib/models/model.py::load_model` skips the parameters whose shapes differ).
# With exactly 80 classes of another label set nothing is skipped: re-initialise by hand (see the README).
_base_ = './centernet_r18-dcnv2_released_coco.py'

# the converted COCO checkpoint (step 1 above)
load_from = 'checkpoints/centernet_r18-dcnv2_coco.pth'
# The data: one COCO-format folder
#   data_root/annotations/instances_train.json, data_root/annotations/instances_val.json,
#   data_root/images/ (every image of both jsons; `file_name` relative to it)
data_root = '{{$MMKP_DATA:data}}/bccd/'
classes = ('RBC', 'WBC', 'Platelets')  # the names of the json's categories, in the order of their ids
num_classes = len(classes)
metainfo = dict(classes=classes)

model = dict(bbox_head=dict(num_classes=num_classes))

train_dataloader = dict(
    batch_size=16,
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

# Short schedule: backbone, neck and regression branches start from COCO, only the heatmap output starts afresh, so
# a fraction of the original's 140 epochs suffices: 30 epochs, lr / 10 after 20, no warm-up (as the original), and
# the original's Adam lr scaled linearly to the batch: 5e-4 x 16 / 114 = 7e-5. Validation and a checkpoint every
# 5 epochs, keeping the best bbox mAP. Training pipeline (512 crops, scale 0.6-1.3, flip, colour jitter) and test
# (original resolution on the black canvas) are those of the released model.
max_epochs = 30
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=7e-5))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[20], gamma=0.1)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=2, save_best='coco/bbox_mAP', rule='greater'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
