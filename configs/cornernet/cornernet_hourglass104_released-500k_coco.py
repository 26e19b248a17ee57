# The released CornerNet weights, CornerNet_500000.pkl (either file: princeton-vl/CornerNet-Lite@6a54505
# core/models/CornerNet.py, or princeton-vl/CornerNet@e5c39a3 models/CornerNet.py; same model, same test), converted
# with tools/model_converters/cornernet_to_mmkp.py (which reads this config's model for the target keys and shapes)
# and evaluated as the authors did (CornerNet-Lite core/test/cornernet.py::cornernet_inference with
# configs/CornerNet.json, CornerNet test/coco.py::kp_detection with config/CornerNet.json). The parent config's test
# is already the authors' test, so nothing is overridden:
# - BGR images normalised with core/dbs/coco.py's BGR mean / std (x255, bgr_to_rgb=False), no size-divisor padding;
# - each image centred on a zero canvas of (h | 127, w | 127) (RandomCenterCropPad test mode), batch 1;
# - the decoder's cell -> pixel ratio read off the shapes: output (inp + 1) // 4 over input inp (128 / 511 at 511);
# - top 100 corners per type, 3x3 peaks, ae threshold 0.5, 1000 pairs, Gaussian soft-NMS (sigma 0.5, discard
#   < 0.001, "+1" areas), 100 per image;
# - the image and its flip (the original always flips): `tools/test.py ... --tta` (CornerNetTTAModel).
# Model, training and the deviations are those of the parent config (see configs/cornernet/README.md).
_base_ = './cornernet_hourglass104_10xb5-500k_coco.py'
