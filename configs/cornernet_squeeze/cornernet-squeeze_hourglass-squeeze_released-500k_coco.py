# The released CornerNet-Squeeze weights, CornerNet_Squeeze_500000.pkl (princeton-vl/CornerNet-Lite@6a54505
# core/models/CornerNet_Squeeze.py), converted with tools/model_converters/cornernet_squeeze_to_mmkp.py (which reads
# this config's model for the target keys and shapes) and evaluated as the authors did
# (core/test/cornernet.py::cornernet_inference with configs/CornerNet_Squeeze.json). The parent config's test is
# already the authors' test, so nothing is overridden:
# - BGR images normalised with core/dbs/coco.py's BGR mean / std (x255, bgr_to_rgb=False), no size-divisor padding;
# - each image centred on a zero canvas of (h | 127, w | 127), batch 1; single view, no flip (`test_flipped: false`):
#   plain tools/test.py;
# - the decoder's cell -> pixel ratio read off the shapes: output (inp + 1) // 8 over input inp (64 / 511 at 511);
# - top 20 corners per type, 3x3 peaks, ae threshold 0.5, 100 pairs, Gaussian soft-NMS (sigma 0.5, discard < 0.001,
#   "+1" areas), 100 per image.
# Model, training and the deviations are those of the parent config (see configs/cornernet_squeeze/README.md).
_base_ = './cornernet-squeeze_hourglass-squeeze_4xb14-500k_coco.py'
