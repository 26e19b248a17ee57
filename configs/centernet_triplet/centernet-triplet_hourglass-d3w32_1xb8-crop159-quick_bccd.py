# CenterNet keypoint triplets on BCCD, small enough to train on a 2-core CPU (the quick config;
# tests/e2e/test_triplet_learns.py). Kept from the paper config (centernet-triplet_hourglass104_8xb6-480k_coco.py):
# the whole method -- two stacked hourglasses with intermediate supervision, cascade corner pooling, center
# pooling, heatmaps / embeddings / offsets (3x3 prediction modules), the triplets' targets (uncorrected radius with
# IoU 0.7, center sigma d / 5), losses and their normalisation, the decoding with the center-region check (5 px
# rule, n = 3 / 5 at 22,500 px^2 of the original image) and Gaussian soft-NMS.
# Reduced for the CPU exactly as the CornerNet quick config (../cornernet/cornernet_hourglass-d3w32_1xb8-crop159-
# quick_bccd.py, whose data, schedule and test pipeline are inherited): hourglass depth 3, width 32, pool /
# prediction channels 16, 192 x 144 images and 159 crops, vertical flips, top 40 corners and 40 centers, 200 pairs.
_base_ = '../cornernet/cornernet_hourglass-d3w32_1xb8-crop159-quick_bccd.py'

model = dict(
    bbox_head=dict(
        _delete_=True,
        type='TripletHead',
        num_classes=3,
        in_channels=32,
        num_stacks=2,
        pool_channels=16,
        feat_channels=16,
        keypoints=('top_left', 'bottom_right', 'center'),
        corner_pool=dict(type='CascadeCornerPoolModule'),
        center_pool=dict(type='CenterPoolModule')),
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
        decoder=dict(type='TripletDecoder', topk=40, center_topk=40, ae_threshold=0.5, num_dets=200,
                     outside_margin=5.0),
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001, method='gaussian', offset=1),
        max_per_img=100))
