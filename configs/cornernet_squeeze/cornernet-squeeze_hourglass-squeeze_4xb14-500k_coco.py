# CornerNet-Squeeze (Law et al., CornerNet-Lite 2019), COCO: princeton-vl/CornerNet-Lite@6a54505
# `configs/CornerNet_Squeeze.json` and `core/models/CornerNet_Squeeze.py`. Faithful:
# - model: HourglassSqueezeNet (2 stacks of fire-module hourglasses, output stride 8) + CornerPoolHead with 1x1
#   prediction modules; 31,771,852 parameters, as the released model; PyTorch default init, trained from scratch;
# - targets, losses, data pipeline and optimiser as CornerNet (cornernet/cornernet_hourglass104_10xb5-500k_coco.py):
#   corrected radius with IoU 0.3, ratio 64 / 511 (read off the shapes), Adam 2.5e-4, 500k iterations, lr / 10 at
#   450k, random 0.6-1.3 crops of 511 with border 128, flip, color jitter + lighting, BGR mean / std;
# - test: single scale, no flip (`test_flipped false`), input (h | 127, w | 127) zero-padded, output (inp + 1) / 8,
#   top 20 corners per type, ae threshold 0.5, 100 pairs, Gaussian soft-NMS sigma 0.5, 100 per image.
# Deviations: batch 4 x 14 = 56 (the original: 55 on 4 GPUs with chunks [13, 14, 14, 14]); the others of CornerNet
# (soft-NMS keep list used, no ties beyond 100, training flip x -> W - x).
_base_ = '../cornernet/cornernet_hourglass104_10xb5-500k_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='HourglassSqueezeNet',
        downsample_times=4,
        num_stacks=2,
        stage_channels=(256, 256, 384, 384, 512),
        stage_blocks=(2, 2, 2, 2, 4),
        feat_channel=256),
    bbox_head=dict(pred_kernel_size=1),
    test_cfg=dict(decoder=dict(topk=20, num_dets=100)))

train_dataloader = dict(batch_size=14)
# Adam lr 2.5e-4 was set for the total batch 55 (here 56).
auto_scale_lr = dict(enable=False, base_batch_size=56)
# `tools/test.py --tta` flips as CornerNet does; the paper's CornerNet-Squeeze numbers are without flip.
