# The released CenterNet-104 weights, CenterNet-104_480000.pkl (Duankaiwen/CenterNet@3ad3a10 models/CenterNet-104.py,
# models/py_utils/kp.py), converted with tools/model_converters/centernet_triplet_to_mmkp.py (which reads this
# config's model for the target keys and shapes) and evaluated as the authors did (test/coco.py::kp_detection with
# config/CenterNet-104.json and db/detection.py's defaults). The parent config's test is already the authors' test,
# so nothing is overridden:
# - BGR images normalised with db/coco.py's BGR mean / std (x255, bgr_to_rgb=False), no size-divisor padding;
# - each image centred on a zero canvas of (h | 127, w | 127), batch 1; test_scales [1] (single scale);
# - the decoder's cell -> pixel ratio read off the shapes: output (inp + 1) // 4 over input inp (128 / 511 at 511);
# - top 70 corners per type and 70 centers (top_k 70), 3x3 peaks (nms_kernel 3), ae threshold 0.5, 1000 pairs;
# - boxes more than 5 px outside the image removed (_rescale_dets), the center-region check (n = 3 up to
#   22,500 px^2, else 5; score (2 s + s_ct) / 3 with the first matching center);
# - Gaussian soft-NMS (nms_algorithm exp_soft_nms, Nt 0.5, sigma 0.5, discard < 0.001; merge_bbox false), 100 per
#   image (max_per_image);
# - the image and its flip, always (the original concatenates the flipped image in every test): run
#   `tools/test.py CONFIG CHECKPOINT --tta` (the parent's tta_model: pairs and centers of both views pooled,
#   original-image centers first, one center-region check, one soft-NMS).
# Model, training and the deviations are those of the parent config (see configs/centernet_triplet/README.md).
_base_ = './centernet-triplet_hourglass104_8xb6-480k_coco.py'
