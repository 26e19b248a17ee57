# The model's data preprocessor of the CornerNet family: BGR images normalised with CornerNet's BGR mean / std
# (princeton-vl/CornerNet-Lite @ 6a54505, core/dbs/coco.py: mean [0.40789654, 0.44719302, 0.47026115], std
# [0.28863828, 0.27408164, 0.27809835], here x 255), no channel swap, no size-divisor padding (the test pipelines pad).
mean = [104.01362, 114.03422, 119.91659]  # CornerNet's BGR mean / std (x 255)
std = [73.60276, 69.89082, 70.91508]
model = dict(data_preprocessor=dict(type='DetDataPreprocessor', mean=mean, std=std, bgr_to_rgb=False))
