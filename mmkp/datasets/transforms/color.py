"""Photometric augmentation of CornerNet / CenterNet: color jitter and PCA lighting.

From princeton-vl/CornerNet-Lite@6a54505 ``core/sample/utils.py`` (``color_jittering_``,
``lighting_``, ``brightness_``, ``contrast_``, ``saturation_``) and the eigen-decomposition of ``core/dbs/coco.py``.
The originals work on BGR images divided by 255; these transforms work on the 0-255 BGR images of mmdet pipelines,
so the lighting shift is scaled by 255 and the result is the original's times 255.
"""
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmkp.registry import TRANSFORMS

#: COCO RGB-pixel PCA of CornerNet-Lite ``core/dbs/coco.py`` (eigenvectors are rows in BGR channel order, as the
#: images).
COCO_EIGVAL = (0.2141788, 0.01817699, 0.00341571)
COCO_EIGVEC = ((-0.58752847, -0.69563484, 0.41340352), (-0.5832747, 0.00994535, -0.81221408),
               (-0.56089297, 0.71832671, 0.41158938))


def _check_image(results: dict, name: str) -> np.ndarray:
    img = results.get('img')
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        shape = None if img is None else img.shape
        raise ValueError(f'{name} needs a 3-channel BGR image in results["img"], got shape {shape} '
                         f'(file: {results.get("img_path", "?")})')
    return img.astype(np.float32)


@TRANSFORMS.register_module()
class RandomColorJitter(BaseTransform):
    """Brightness, contrast and saturation jitter in random order (CornerNet ``color_jittering_``).

    Each factor is alpha = 1 + U(-var, var); with ``gray`` the grayscale of the image *before* jitter (computed once,
    as in the original) and ``mean`` its mean:

    * brightness: img = alpha * img;
    * contrast: img = alpha * img + (1 - alpha) * mean(gray);
    * saturation: img = alpha * img + (1 - alpha) * gray.

    No clipping (the original keeps floats). Required keys: ``img`` (H, W, 3) BGR, uint8 or float.
    Modified keys: ``img`` (float32).

    Args:
        brightness (float): var of the brightness factor. Defaults to 0.4.
        contrast (float): var of the contrast factor. Defaults to 0.4.
        saturation (float): var of the saturation factor. Defaults to 0.4.
        prob (float): probability of applying the jitter. Defaults to 1.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, prob: float = 1.0):
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.prob = prob

    def transform(self, results: dict) -> dict:
        img = _check_image(results, type(self).__name__)
        if np.random.rand() >= self.prob:
            results['img'] = img
            return results
        # cv2.COLOR_BGR2GRAY weights
        gray = img[..., 0] * 0.114 + img[..., 1] * 0.587 + img[..., 2] * 0.299
        gray_mean = gray.mean()
        for op in np.random.permutation(3):
            if op == 0:
                alpha = 1.0 + np.random.uniform(-self.brightness, self.brightness)
                img = img * alpha
            elif op == 1:
                alpha = 1.0 + np.random.uniform(-self.contrast, self.contrast)
                img = img * alpha + gray_mean * (1 - alpha)
            else:
                alpha = 1.0 + np.random.uniform(-self.saturation, self.saturation)
                img = img * alpha + gray[..., None] * (1 - alpha)
        results['img'] = img.astype(np.float32)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, '
                f'saturation={self.saturation}, prob={self.prob})')


@TRANSFORMS.register_module()
class RandomPCALighting(BaseTransform):
    """AlexNet-style PCA lighting noise (CornerNet ``lighting_``): img += 255 * eigvec @ (eigval * alpha).

    alpha ~ N(0, ``alphastd``) per channel component. Required keys: ``img`` (H, W, 3) BGR. Modified keys:
    ``img`` (float32).

    Args:
        alphastd (float): std of alpha. Defaults to 0.1.
        eigval (Sequence[float]): eigenvalues (on the /255 scale). Defaults to the COCO values of CornerNet.
        eigvec (Sequence[Sequence[float]]): 3 x 3 eigenvectors. Defaults to the COCO values of CornerNet.
        prob (float): probability of applying it. Defaults to 1.
    """

    def __init__(self,
                 alphastd: float = 0.1,
                 eigval: Sequence[float] = COCO_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = COCO_EIGVEC,
                 prob: float = 1.0):
        self.alphastd = alphastd
        self.eigval = np.asarray(eigval, dtype=np.float32)
        self.eigvec = np.asarray(eigvec, dtype=np.float32)
        if self.eigval.shape != (3, ) or self.eigvec.shape != (3, 3):
            raise ValueError(f'eigval must have 3 values and eigvec 3x3, got {self.eigval.shape} and '
                             f'{self.eigvec.shape}')
        self.prob = prob

    def transform(self, results: dict, alpha: Optional[np.ndarray] = None) -> dict:
        img = _check_image(results, type(self).__name__)
        if np.random.rand() < self.prob:
            if alpha is None:
                alpha = np.random.normal(scale=self.alphastd, size=(3, ))
            shift = self.eigvec @ (self.eigval * alpha)
            img = img + 255.0 * shift.astype(np.float32)
        results['img'] = img.astype(np.float32)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(alphastd={self.alphastd}, prob={self.prob})'
