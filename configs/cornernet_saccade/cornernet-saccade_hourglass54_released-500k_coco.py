# The released CornerNet-Saccade weights, CornerNet_Saccade_500000.pkl (princeton-vl/CornerNet-Lite@6a54505
# core/models/CornerNet_Saccade.py), converted with tools/model_converters/cornernet_saccade_to_mmkp.py (which reads
# this config's model for the target keys and shapes). The original's test settings that the parent config already
# has:
# - BGR images normalised with core/dbs/coco.py's BGR mean / std (x255, bgr_to_rgb=False), no size-divisor padding;
# - 255 x 255 network input and 64 x 64 maps: the decoder's cell -> pixel ratio read off the shapes (255 / 64);
# - per-view decoding as core/test/cornernet_saccade.py::batch_decode: top 12 corners, 3x3 peaks, ae threshold 0.3,
#   12 pairs, `no_border` corner rejection; Gaussian soft-NMS sigma 0.7 (discard < 0.001), 100 per image, batch 1;
# - the saccade procedure of core/test/cornernet_saccade.py::cornernet_saccade_inference (CornerNetSaccade with
#   test_cfg.saccade: views 192 / 255, attention threshold 0.3, zooms 1 / 2 / 4, 30 crops, ref_dets), on the
#   original image.
_base_ = './cornernet-saccade_hourglass54_4xb12-500k_coco.py'
