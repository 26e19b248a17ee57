# CenterNet: Keypoint Triplets, CenterNet511-52, COCO (Duankaiwen/CenterNet@3ad3a10 `config/CenterNet-52.json`,
# `models/CenterNet-52.py`): CenterNet-104's setting (./centernet-triplet_hourglass104_8xb6-480k_coco.py) on
# "Hourglass-52", one stack of the Hourglass-104 module (no intermediate supervision). mmkp's StackedHourglassNet
# is mmdet's HourglassNet without the inter-stack residual mmdet builds (and never runs) for one stack: 104,844,152
# parameters as the released CenterNet-52_480000.pkl.
_base_ = './centernet-triplet_hourglass104_8xb6-480k_coco.py'

model = dict(backbone=dict(num_stacks=1), bbox_head=dict(num_stacks=1))
