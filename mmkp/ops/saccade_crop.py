"""Batched saccade crops: all zoomed crops of CornerNet-Saccade's test procedure in one call.

The original (princeton-vl/CornerNet-Lite@6a54505 ``core/test/cornernet_saccade.py``, ``prepare_images`` /
``crop_image_gpu``) crops, for each location (y, x, zoom), a window of side
``int(255 / zoom)`` original pixels centred at ``(int(y), int(x))``, resizes the part inside the image with
``F.interpolate(mode='bilinear')`` (``align_corners=False``) onto a zero 255 x 255 canvas, one crop per Python
call, and maps detections back with ``orig = crop / zoom + (int(y) - side // 2, int(x) - side // 2)``.

Here every crop is one bilinear resampling of the full ``side x side`` window, all crops of a batch in one kernel:

* window: ``side = max(floor(out_size / zoom), 1)``, top-left ``(y0, x0) = (trunc(y) - side // 2,
  trunc(x) - side // 2)`` (the original's ``int()`` truncation and offsets);
* crop pixel ``(oy, ox)`` samples the original image at the continuous point
  ``(y0 + (oy + 0.5) * side / out_size, x0 + (ox + 0.5) * side / out_size)`` (pixel ``i`` covers ``[i, i + 1)``)
  with bilinear interpolation; points outside ``[0, H) x [0, W)`` give 0; the interpolation neighbours are clamped
  to the window's pixels inside the image (as ``F.interpolate`` clamps at the edges of the crop the original
  resizes). A window wholly inside the image therefore equals
  ``F.interpolate(image[:, :, y0:y0 + side, x0:x0 + side], out_size, mode='bilinear', align_corners=False)``.
* back-mapping: ``orig = crop_pixel / scale + offset`` with ``scale = out_size / side`` -- the exact inverse of the
  resampling.

Deviations from the original, by design: (1) the original's window ``[c - side // 2, c + side // 2)`` is one
pixel short for odd ``side`` (its last canvas row / column stays zero); here the window is the full ``side``;
(2) the original resizes the clipped in-image part with its own ``int()``-rounded scale, here one scale serves the
whole crop; (3) the original maps back with the nominal ``zoom`` instead of ``out_size / side`` (up to
``zoom / out_size`` relative error). Differences are below one crop pixel.
"""
from numbers import Integral, Real
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from . import reference
from .ext_loader import ext_loaded, use_compiled


def saccade_windows(centers: Tensor, zooms: Tensor, out_size: int) -> Tuple[Tensor, Tensor]:
    """Crop windows and back-mapping transforms of saccade crops (no argument checks).

    Args:
        centers (Tensor): (K, 2) ``[y, x]`` centres in original-image pixels.
        zooms (Tensor): (K,) zooms (> 0).
        out_size (int): crop side in crop pixels.

    Returns:
        tuple[Tensor, Tensor]: ``windows`` (K, 3) float32 ``[y0, x0, side]`` (original pixels) and ``transforms``
        (K, 3) float32 ``[offset_y, offset_x, scale]`` with ``orig = crop / scale + offset``.
    """
    c = centers.to(torch.float64)
    side = torch.floor(out_size / zooms.to(torch.float64)).clamp(min=1)
    half = torch.floor(side / 2)
    y0 = c[:, 0].trunc() - half
    x0 = c[:, 1].trunc() - half
    windows = torch.stack([y0, x0, side], dim=1).to(torch.float32)
    transforms = torch.stack([y0, x0, out_size / side], dim=1).to(torch.float32)
    return windows, transforms


def saccade_crop(images: Tensor,
                 centers: Tensor,
                 zooms: Union[Tensor, float],
                 out_size: int = 255,
                 image_inds: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Crop and bilinearly resize zoomed windows of a batch of images in one call.

    Args:
        images (Tensor): (N, C, H, W) floating images (any value range, e.g. 0-1 before normalisation as in the
            original; zero padding is applied outside the image).
        centers (Tensor): (K, 2) floating ``[y, x]`` crop centres in original-image pixels; truncated to integers
            like the original's ``int()``.
        zooms (Tensor | float): (K,) zoom of each crop (> 0; a crop spans ``floor(out_size / zoom)`` original
            pixels), or one number for all crops.
        out_size (int): side of the square crops in crop pixels. Defaults to 255 (CornerNet-Saccade's input).
        image_inds (Tensor, optional): (K,) integer index into ``images`` of each crop. Defaults to None: all
            crops from image 0, allowed only when N == 1.

    Returns:
        tuple[Tensor, Tensor]:

        - crops (Tensor): (K, C, out_size, out_size), dtype and device of ``images``, contiguous;
          differentiable with respect to ``images`` (bilinear scatter-add backward).
        - transforms (Tensor): (K, 3) float32 ``[offset_y, offset_x, scale]`` on the device of ``images``; a
          point at crop pixel coordinates ``(cy, cx)`` (continuous, pixel ``i`` covering ``[i, i + 1)``) lies at
          ``(cy / scale + offset_y, cx / scale + offset_x)`` in the original image.

    Raises:
        TypeError: ``images`` / ``centers`` / ``zooms`` not floating, ``image_inds`` not integer, ``out_size`` not
            an int.
        ValueError: wrong shapes, ``out_size < 1``, zooms not finite and positive, ``image_inds`` missing with
            N > 1 or outside ``[0, N)``.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f'images must be a torch.Tensor, got {type(images).__name__}')
    if images.dim() != 4:
        raise ValueError(f'images must be a 4-d (N, C, H, W) tensor, got shape {tuple(images.shape)}')
    if not images.is_floating_point():
        raise TypeError(f'images must be a floating tensor, got dtype {images.dtype}')
    if isinstance(out_size, bool) or not isinstance(out_size, Integral):
        raise TypeError(f'out_size must be an int, got {type(out_size).__name__}')
    out_size = int(out_size)
    if out_size < 1:
        raise ValueError(f'out_size must be >= 1, got {out_size}')
    if not isinstance(centers, Tensor):
        raise TypeError(f'centers must be a torch.Tensor, got {type(centers).__name__}')
    if centers.dim() != 2 or centers.size(1) != 2:
        raise ValueError(f'centers must be a (K, 2) tensor [y, x], got shape {tuple(centers.shape)}')
    if not centers.is_floating_point():
        raise TypeError(f'centers must be a floating tensor, got dtype {centers.dtype}')
    device = images.device
    K = centers.size(0)
    centers = centers.to(device)
    if isinstance(zooms, Tensor):
        if not zooms.is_floating_point():
            raise TypeError(f'zooms must be a floating tensor, got dtype {zooms.dtype}')
        if zooms.dim() == 0:
            zooms = zooms.expand(K)
        if zooms.shape != (K, ):
            raise ValueError(f'zooms must be a (K,) tensor with K = {K} (rows of centers), got shape '
                             f'{tuple(zooms.shape)}')
        zooms = zooms.to(device)
    elif isinstance(zooms, Real) and not isinstance(zooms, bool):
        zooms = torch.full((K, ), float(zooms), dtype=torch.float64, device=device)
    else:
        raise TypeError(f'zooms must be a tensor or a number, got {type(zooms).__name__}')
    N = images.size(0)
    if image_inds is None:
        if N != 1 and K > 0:
            raise ValueError(f'image_inds is required when images holds N = {N} != 1 images')
        image_inds = torch.zeros(K, dtype=torch.long, device=device)
    else:
        if not isinstance(image_inds, Tensor):
            raise TypeError(f'image_inds must be a torch.Tensor, got {type(image_inds).__name__}')
        if image_inds.is_floating_point() or image_inds.is_complex() or image_inds.dtype == torch.bool:
            raise TypeError(f'image_inds must be an integer tensor, got dtype {image_inds.dtype}')
        if image_inds.shape != (K, ):
            raise ValueError(f'image_inds must be a (K,) tensor with K = {K}, got shape {tuple(image_inds.shape)}')
        image_inds = image_inds.to(device=device, dtype=torch.long)
    if K > 0:
        if not bool(torch.isfinite(zooms).all() & (zooms > 0).all()):
            raise ValueError('zooms must be finite and > 0')
        if not bool(torch.isfinite(centers).all()):
            raise ValueError('centers must be finite')
        lo, hi = int(image_inds.min()), int(image_inds.max())
        if lo < 0 or hi >= N:
            raise ValueError(f'image_inds must lie in [0, {N}), got values in [{lo}, {hi}]')
    windows, transforms = saccade_windows(centers, zooms, out_size)
    if use_compiled(images):
        crops = torch.ops.mmkp.saccade_crop(images, image_inds, windows, out_size)
    else:
        crops = reference.saccade_crop(images, image_inds, windows, out_size)
    return crops, transforms


def _register() -> None:
    lib = torch.library

    @lib.register_fake('mmkp::saccade_crop')
    def _crop_fake(images, image_inds, windows, out_size):
        return images.new_empty((windows.size(0), images.size(1), out_size, out_size))

    @lib.register_fake('mmkp::saccade_crop_backward')
    def _crop_bwd_fake(grad_out, image_inds, windows, image_shape):
        return grad_out.new_empty(tuple(image_shape))

    def _setup(ctx, inputs, output):
        images, image_inds, windows, out_size = inputs
        ctx.save_for_backward(image_inds, windows)
        ctx.image_shape = list(images.shape)

    def _backward(ctx, grad):
        image_inds, windows = ctx.saved_tensors
        grad_images = None
        if ctx.needs_input_grad[0]:
            grad_images = torch.ops.mmkp.saccade_crop_backward(grad, image_inds, windows, ctx.image_shape)
        return grad_images, None, None, None

    lib.register_autograd('mmkp::saccade_crop', _backward, setup_context=_setup)


if ext_loaded():
    _register()
