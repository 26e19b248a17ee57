# coco128: 128 train2017 + 128 val2017 COCO images with the 80 COCO classes and ids, for COCO-format runs on a CPU.
# The data lives outside the repo: $MMKP_DATA/coco128.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'
data_root = '{{$MMKP_DATA:data}}/coco128/'
# mmkp's CocoDataset: annotation problems are named and counted, never dropped silently (mmkp/datasets/coco.py)
train_dataloader = dict(dataset=dict(type='CheckedCocoDataset', data_root=data_root))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset', data_root=data_root))
test_dataloader = val_dataloader
# mmdet's CocoMetric with the dataset's annotation rules (its ground truth is the boxes the dataset uses)
val_evaluator = dict(type='CheckedCocoMetric', ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
