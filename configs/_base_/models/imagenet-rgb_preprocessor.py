# The model's data preprocessor for backbones with ImageNet RGB statistics: BGR images (mmcv loads BGR) turned to RGB,
# normalised with the torchvision ImageNet mean / std (x 255), batches zero-padded to a multiple of 32.
model = dict(
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32))
