"""Gaussian heatmap primitives shared by every keypoint head (one formula, one place).

From princeton-vl/CornerNet-Lite@6a54505 ``core/sample/utils.py`` (``gaussian_radius``,
``draw_gaussian``) and xingyizhou/CenterNet@4c50fd3 ``src/lib/utils/image.py`` (``gaussian_radius``,
``draw_umich_gaussian``).
"""
from typing import NamedTuple, Tuple

import torch
from torch import Tensor

RADIUS_FORMULAS = ('corrected', 'original')
#: Above this fraction of occupied planes a :class:`CompactHeatmap` is made dense for the focal loss: its compact form
#: computes the occupied planes twice (the y = 0 term of every pixel, then their correction), which then costs more
#: than zeroing the empty planes of a dense target.
COMPACT_MAX_OCCUPANCY = 0.5


class CompactHeatmap(NamedTuple):
    """A (B, C, H, W) target heatmap stored as its planes that hold a keypoint; every other plane is zero.

    A plane is one (image, class) map. With COCO's 80 classes an image's objects occupy a few of its planes (20
    objects of random classes: about 18 of 80), so the compact form allocates, zeroes and reads a fraction of the
    dense target; :func:`mmkp.models.losses.heatmap_focal_loss` takes it directly.

    Attributes:
        values (Tensor): (P, H, W) the occupied planes, in the order of ``planes``.
        planes (Tensor): int64 (P,), strictly increasing flat plane index ``image * C + class``.
        shape (tuple[int, int, int, int]): (B, C, H, W) of the dense heatmap.
    """
    values: Tensor
    planes: Tensor
    shape: Tuple[int, int, int, int]

    @property
    def occupancy(self) -> float:
        """Fraction of the B x C planes that are stored."""
        batch, num_classes = self.shape[:2]
        return self.planes.numel() / max(batch * num_classes, 1)

    def dense(self) -> Tensor:
        """The (B, C, H, W) heatmap (a new tensor: zeros, then the occupied planes)."""
        batch, num_classes, height, width = self.shape
        out = self.values.new_zeros((batch * num_classes, height, width))
        out[self.planes] = self.values
        return out.view(batch, num_classes, height, width)


def gaussian_radius(height: Tensor, width: Tensor, min_overlap: float = 0.7, formula: str = 'corrected') -> Tensor:
    """Radius of the Gaussian around a keypoint, as the smallest of three quadratic roots.

    The radius r is such that a box whose corners are moved by up to r still has IoU >= ``min_overlap`` with the
    ground truth, in three cases: both corners inside, both outside, one inside and one outside (CornerNet,
    section 3.2). With ``a, b, c`` the coefficients of case i:

    * ``'corrected'`` (CornerNet-Lite, CornerNet after commit 3e71377, mmdet): r1 = (b1 - sqrt(d1)) / (2 a1),
      r2 = (b2 - sqrt(d2)) / (2 a2), r3 = (b3 + sqrt(d3)) / (2 a3);
    * ``'original'`` (CornerNet before the fix, CenterNet keypoint triplets, CenterNet objects as points):
      ri = (bi + sqrt(di)) / 2 for all three, whose minimum is always r3 = 4 o r3_corrected.

    Args:
        height (Tensor): box heights, any shape, in feature-map cells (the originals pass ``ceil(h * ratio)``).
        width (Tensor): box widths, same shape as ``height``.
        min_overlap (float): the IoU o. Defaults to 0.7.
        formula (str): ``'corrected'`` or ``'original'``. Defaults to ``'corrected'``.

    Returns:
        Tensor: the real-valued radius, same shape and dtype as ``height`` (floating point). The originals then take
        ``max(0, int(radius))``.

    Raises:
        ValueError: for an unknown ``formula`` or ``min_overlap`` outside (0, 1).
    """
    if formula not in RADIUS_FORMULAS:
        raise ValueError(f'radius formula must be one of {RADIUS_FORMULAS}, got {formula!r}')
    if not 0 < min_overlap < 1:
        raise ValueError(f'min_overlap must lie in (0, 1), got {min_overlap}')
    h, w, o = height, width, min_overlap
    b1 = h + w
    c1 = w * h * (1 - o) / (1 + o)
    sq1 = torch.sqrt(b1**2 - 4 * c1)
    b2 = 2 * (h + w)
    c2 = (1 - o) * w * h
    sq2 = torch.sqrt(b2**2 - 16 * c2)
    a3 = 4 * o
    b3 = -2 * o * (h + w)
    c3 = (o - 1) * w * h
    sq3 = torch.sqrt(b3**2 - 4 * a3 * c3)
    if formula == 'corrected':
        r1 = (b1 - sq1) / 2
        r2 = (b2 - sq2) / 8
        r3 = (b3 + sq3) / (2 * a3)
    else:
        r1 = (b1 + sq1) / 2
        r2 = (b2 + sq2) / 2
        r3 = (b3 + sq3) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def integer_radius(height: Tensor, width: Tensor, min_overlap: float, formula: str, min_radius: int = 0) -> Tensor:
    """``max(min_radius, int(gaussian_radius(ceil(h), ceil(w))))`` as the originals compute it.

    Computed in float64 (the originals use Python floats) so that radii land on the same integer.

    Args:
        height (Tensor): box heights in feature-map cells, shape (N,).
        width (Tensor): box widths in feature-map cells, shape (N,).
        min_overlap (float): see :func:`gaussian_radius`.
        formula (str): see :func:`gaussian_radius`.
        min_radius (int): lower bound. Defaults to 0.

    Returns:
        Tensor: int64 radii, shape (N,).
    """
    h = torch.ceil(height.double())
    w = torch.ceil(width.double())
    radius = gaussian_radius(h, w, min_overlap, formula).trunc().long()
    return radius.clamp(min=min_radius)


def draw_gaussians(heatmap: Tensor, plane: Tensor, center_x: Tensor, center_y: Tensor, radius: Tensor,
                   sigma_factor: float = 6.0) -> Tensor:
    """Draw one Gaussian per keypoint into a stack of heatmaps, all keypoints at once, max-blended.

    For keypoint n with integer position (x, y) and radius r the window [y-r, y+r] x [x-r, x+r] (cropped at the
    borders) receives ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` with diameter d = 2r + 1 and sigma = d /
    ``sigma_factor``; values below ``eps * 1`` (float64 eps, as numpy's ``np.finfo(h.dtype).eps * h.max()``) are
    zeroed; overlapping Gaussians of one plane keep the element-wise maximum (``np.maximum``). The peak is exactly
    1 at (x, y).

    Args:
        heatmap (Tensor): shape (P, H, W), updated in place; P planes, usually batch x classes.
        plane (Tensor): int64 (N,), the plane of each keypoint (``image_index * num_classes + label``).
        center_x (Tensor): int64 (N,), column in cells, 0 <= x < W.
        center_y (Tensor): int64 (N,), row in cells, 0 <= y < H.
        radius (Tensor): int64 (N,), radius in cells, >= 0.
        sigma_factor (float): diameter / sigma. 6 in CornerNet and CenterNet (points); 5 for the center heatmap of
            CenterNet keypoint triplets. Defaults to 6.

    Returns:
        Tensor: ``heatmap``.
    """
    num = plane.numel()
    if num == 0:
        return heatmap
    _, height, width = heatmap.shape
    max_r = int(radius.max())
    # A window never needs to be larger than the map.
    span_y = min(max_r, height - 1)
    span_x = min(max_r, width - 1)
    device = heatmap.device
    dy = torch.arange(-span_y, span_y + 1, device=device)
    dx = torch.arange(-span_x, span_x + 1, device=device)
    # One kernel per distinct radius (few), computed in float64 as the originals, then looked up per keypoint.
    radii, which = torch.unique(radius, return_inverse=True)
    r = radii.view(-1, 1, 1)
    sigma = (2 * r + 1).double() / sigma_factor
    dist2 = (dy.view(1, -1, 1)**2 + dx.view(1, 1, -1)**2).double()
    kernels = torch.exp(-dist2 / (2 * sigma * sigma))
    kernels = torch.where(kernels < torch.finfo(torch.float64).eps, torch.zeros_like(kernels), kernels)
    # outside its radius a window entry is -inf, which the max-blend ignores
    inside = (dy.view(1, -1, 1).abs() <= r) & (dx.view(1, 1, -1).abs() <= r)
    kernels = torch.where(inside, kernels.to(heatmap.dtype), torch.full_like(kernels, float('-inf'),
                                                                             dtype=heatmap.dtype))
    ys = center_y.view(num, 1) + dy.view(1, -1)  # (N, Wy)
    xs = center_x.view(num, 1) + dx.view(1, -1)  # (N, Wx)
    valid = ((ys >= 0) & (ys < height)).unsqueeze(2) & ((xs >= 0) & (xs < width)).unsqueeze(1)
    values = torch.where(valid, kernels[which], torch.full((), float('-inf'), dtype=heatmap.dtype, device=device))
    # cells off the map are redirected to an in-map cell with value -inf (no effect), so no masking is needed
    flat_index = (plane.view(num, 1, 1) * height + ys.clamp(0, height - 1).unsqueeze(2)) * width + \
        xs.clamp(0, width - 1).unsqueeze(1)
    heatmap.view(-1).scatter_reduce_(0, flat_index.view(-1), values.view(-1), reduce='amax', include_self=True)
    return heatmap


def keypoint_grid_position(coord: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """Integer cell and sub-cell offset of keypoint coordinates given in cells.

    The originals take ``int(fx)`` (floor for non-negative fx) and the offset ``fx - int(fx)`` in [0, 1), for
    top-left, bottom-right and center keypoints alike (no ceil for bottom-right).

    Args:
        coord (Tensor): float coordinates in cells, shape (N,).
        size (int): map size along that axis; the cell is clamped to [0, size - 1] as a guard.

    Returns:
        tuple[Tensor, Tensor]: int64 cells (N,) and float offsets (N,).
    """
    cell = coord.floor().clamp(0, size - 1)
    return cell.long(), coord - cell
