# CenterNet: Keypoint Triplets (Duan et al., ICCV 2019), CenterNet511-104, COCO: the paper / released setting
# (Duankaiwen/CenterNet@3ad3a10 `config/CenterNet-104.json`, `models/CenterNet-104.py`, `models/py_utils/kp.py`).
# Faithful:
# - model: mmdet's HourglassNet (Hourglass-104, 2 stacks) + TripletHead: cascade corner pooling (top-left,
#   bottom-right), center pooling, heatmaps (bias -2.19) for the three keypoints, embeddings for the corners,
#   offsets for the three, 3x3 prediction modules, intermediate supervision; 210,062,960 parameters as the released
#   CenterNet-104_480000.pkl (tests/test_models/test_dense_heads/test_triplet_head.py);
# - targets: the original's (uncorrected) radius formula with IoU 0.7, the same radius for the corners and the
#   center, sigma = d / 6 for the corners and d / 5 for the center, the center at the integer cell of the scaled box
#   center, ratio 128 / 511;
# - losses: focal loss on the three heatmaps, pull / push 0.1 (summed over images), SmoothL1 offsets for the three
#   keypoints / #objects, everything / #stacks (`kp.py::AELoss`);
# - data: CornerNet's (random scale crop 0.6-1.3 of 511, border 128, zero padding, flip, color jitter + lighting,
#   BGR mean / std), from ../cornernet/cornernet_hourglass104_10xb5-500k_coco.py;
# - Adam lr 2.5e-4, batch 48 (8 GPUs x 6), 480k iterations, lr / 10 at 450k;
# - test: zero canvas of (h | 127, w | 127), top 70 corners and 70 centers, ae threshold 0.5, 1000 pairs, the
#   center-region check (n = 3 up to 22,500 px^2, else 5; score (2 s + s_ct) / 3), boxes more than 5 px outside
#   the scaled image removed, Gaussian soft-NMS (sigma 0.5, discard < 0.001), 100 per image.
# Deviations (configs/centernet_triplet/README.md): the image + flip test of the original runs with
# `tools/test.py --tta` (centers of both views pooled before the check, as the original); soft-NMS's keep list is
# used (the original ignores it); training flip maps x -> W - x (mmdet).
_base_ = '../cornernet/cornernet_hourglass104_10xb5-500k_coco.py'

model = dict(
    backbone=dict(type='StackedHourglassNet'),
    bbox_head=dict(
        _delete_=True,
        type='TripletHead',
        num_classes=80,
        in_channels=256,
        num_stacks=2,
        pool_channels=128,
        feat_channels=256,
        pred_kernel_size=3,
        heatmap_bias=-2.19,
        keypoints=('top_left', 'bottom_right', 'center'),
        corner_pool=dict(type='CascadeCornerPoolModule'),
        center_pool=dict(type='CenterPoolModule'),
        loss_heatmap=dict(type='HeatmapFocalLoss', alpha=2.0, beta=4.0, clamp_eps=1e-4, loss_weight=1.0),
        loss_embedding=dict(
            type='AssociativeEmbeddingPullPushLoss',
            pull_weight=0.1,
            push_weight=0.1,
            margin=1.0,
            eps=1e-4,
            push_diagonal='original',
            image_reduction='sum'),
        loss_offset=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
        corner_reduction='sum',
        stack_reduction='mean',
        offset_norm='objects'),
    train_cfg=dict(
        _delete_=True,
        assigner=dict(
            type='GaussianHeatmapAssigner',
            keypoints=('top_left', 'bottom_right', 'center'),
            radius_formula='original',
            min_overlap=0.7,
            sigma_factor=dict(top_left=6.0, bottom_right=6.0, center=5.0),
            clip_to='input')),
    test_cfg=dict(
        _delete_=True,
        decoder=dict(
            type='TripletDecoder',
            topk=70,
            center_topk=70,
            local_maximum_kernel=3,
            ae_threshold=0.5,
            num_dets=1000,
            small_box_area=22500,
            outside_margin=5.0,
            keep_zero_size=True,
            clip_border=True),
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100))

train_dataloader = dict(batch_size=6)
max_iters = 480000
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[450000], gamma=0.1)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=40000)
# Adam lr 2.5e-4 was set for the total batch 48 (`chunk_sizes` [6] x 8).
auto_scale_lr = dict(enable=False, base_batch_size=48)
# `tools/test.py --tta`: the original's test (image + flipped image; pairs and centers of both views pooled, one
# center-region check, one soft-NMS): the parent config's CornerNetTTAModel and flip pipeline, which call
# TripletHead's hooks.
