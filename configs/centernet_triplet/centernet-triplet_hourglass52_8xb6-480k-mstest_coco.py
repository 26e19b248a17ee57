# CenterNet511-52 multi-scale test (Duankaiwen/CenterNet@3ad3a10 `config/CenterNet-52-multi_scale.json`): the test
# of ./centernet-triplet_hourglass104_8xb6-480k-mstest_coco.py on the model of
# ./centernet-triplet_hourglass52_8xb6-480k_coco.py. Run with `tools/test.py --tta`.
_base_ = './centernet-triplet_hourglass104_8xb6-480k-mstest_coco.py'

model = dict(backbone=dict(num_stacks=1), bbox_head=dict(num_stacks=1))
