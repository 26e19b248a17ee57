# CenterNet DLA-34 "2x": as the 1x config, 230 epochs with lr / 10 at epochs 180 and 210
# (xingyizhou/CenterNet@4c50fd3 `experiments/ctdet_coco_dla_2x.sh`; the released `ctdet_coco_dla_2x.pth`).
# COCO val2017 reported by the original: 37.4 AP (no aug), 39.2 (flip), 41.7 (multi-scale, the `_ms-tta` config).
_base_ = './centernet_dla34-dcnv2_8xb16-crop512-140e_coco.py'

max_epochs = 230
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[180, 210], gamma=0.1)]
train_cfg = dict(max_epochs=max_epochs)
