"""Batched saccade crops: values, the back-mapping, gradients, layouts, edge cases, argument errors."""
import pytest
import torch
import torch.nn.functional as F

from mmkp.ops import saccade_crop, saccade_windows
from mmkp.ops import reference as ref

# the compiled kernels must be there (tests/test_ops/conftest.py): without them these tests fail, not skip
pytestmark = pytest.mark.usefixtures('compiled_ext')


def _images(shape, dtype=torch.float32, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# crops inside, across the border, outside, zoomed in (> 1) and out (< 1), fractional centres
CENTERS = torch.tensor([[20.7, 30.2], [0., 0.], [39., 49.], [15., 25.], [-30., 100.], [33.5, 4.9]])
ZOOMS = torch.tensor([2.0, 1.0, 3.3, 0.45, 1.0, 1.7])
INDS = torch.tensor([0, 1, 1, 0, 1, 0])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_forward_matches_reference(dtype):
    images = _images((2, 3, 40, 50), dtype)
    crops, transforms = saccade_crop(images, CENTERS, ZOOMS, 31, INDS)
    assert crops.shape == (6, 3, 31, 31) and crops.dtype == dtype and crops.is_contiguous()
    assert transforms.shape == (6, 3) and transforms.dtype == torch.float32
    windows, transforms2 = saccade_windows(CENTERS, ZOOMS, 31)
    assert torch.equal(transforms, transforms2)
    expected = ref.saccade_crop(images, INDS, windows, 31)
    torch.testing.assert_close(crops, expected, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    assert torch.equal(crops[4], torch.zeros_like(crops[4]))  # window wholly outside the image


def test_windows_follow_the_original_truncation():
    # side = int(out / zoom), top-left = (int(y) - side // 2, int(x) - side // 2), as prepare_images / crop_image_gpu
    # zooms are float32 (the original's locations are np.float32): int(255 / np.float32(0.3)) = 849, not 850
    windows, transforms = saccade_windows(torch.tensor([[100.9, 57.2], [10., 3.]]), torch.tensor([2.0, 0.3]), 255)
    assert windows.tolist() == [[100 - 63, 57 - 63, 127], [10 - 424, 3 - 424, 849]]
    torch.testing.assert_close(transforms[:, 2], torch.tensor([255 / 127, 255 / 849]))
    assert transforms[:, :2].tolist() == windows[:, :2].tolist()
    windows, _ = saccade_windows(torch.tensor([[10., 3.]]), torch.tensor([0.3], dtype=torch.float64), 255)
    assert windows.tolist() == [[10 - 425, 3 - 425, 850]]


def test_inside_window_equals_interpolate():
    images = _images((2, 3, 60, 70), seed=1)
    centers = torch.tensor([[30., 35.], [25.4, 40.8]])
    zooms = torch.tensor([2.0, 0.9])
    out = 23
    crops, transforms = saccade_crop(images, centers, zooms, out, torch.tensor([1, 0]))
    windows, _ = saccade_windows(centers, zooms, out)
    for k, n in enumerate([1, 0]):
        y0, x0, side = (int(v) for v in windows[k].tolist())
        assert y0 >= 0 and x0 >= 0 and y0 + side <= 60 and x0 + side <= 70
        expected = F.interpolate(images[n:n + 1, :, y0:y0 + side, x0:x0 + side], size=(out, out), mode='bilinear',
                                 align_corners=False)[0]
        torch.testing.assert_close(crops[k], expected, rtol=0, atol=1e-5)
        assert transforms[k, 2].item() == pytest.approx(out / side)


def test_zoom_one_is_a_zero_padded_copy():
    images = _images((1, 2, 12, 15), seed=2)
    crops, transforms = saccade_crop(images, torch.tensor([[2., 13.]]), torch.tensor([1.0]), 9)
    # side 9, window rows 2-4 .. 2+4, cols 13-4 .. 13+4
    assert transforms.tolist() == [[-2., 9., 1.]]
    padded = F.pad(images, (10, 10, 10, 10))
    assert torch.equal(crops[0], padded[0, :, 10 - 2:10 - 2 + 9, 10 + 9:10 + 9 + 9])


def test_transforms_map_crop_pixels_back():
    # the centre of crop pixel o maps to the original point the kernel sampled: (o + 0.5) / scale + offset
    images = torch.arange(40 * 50, dtype=torch.float64).reshape(1, 1, 40, 50) / 10  # linear ramp: bilinear exact
    centers, zooms = torch.tensor([[20., 25.]]), torch.tensor([1.6])
    crops, transforms = saccade_crop(images, centers, zooms, 16)
    oy, ox = 5, 11
    y = (oy + 0.5) / transforms[0, 2].item() + transforms[0, 0].item() - 0.5  # pixel-index coordinates
    x = (ox + 0.5) / transforms[0, 2].item() + transforms[0, 1].item() - 0.5
    assert crops[0, 0, oy, ox].item() == pytest.approx((y * 50 + x) / 10, abs=1e-4)


def test_gradcheck():
    images = _images((2, 2, 9, 11), torch.float64, seed=3).requires_grad_()
    centers = torch.tensor([[4., 5.], [1., 9.], [7.3, 2.2]])
    zooms = torch.tensor([1.7, 0.8, 2.5])
    inds = torch.tensor([0, 1, 0])
    assert torch.autograd.gradcheck(lambda im: saccade_crop(im, centers, zooms, 6, inds)[0], (images, ))


def test_backward_matches_reference():
    images = _images((2, 3, 40, 50), seed=4)
    windows, _ = saccade_windows(CENTERS, ZOOMS, 31)
    grad_out = _images((6, 3, 31, 31), seed=5)
    x1 = images.clone().requires_grad_()
    g1, = torch.autograd.grad(saccade_crop(x1, CENTERS, ZOOMS, 31, INDS)[0], x1, grad_out)
    x2 = images.clone().requires_grad_()
    g2, = torch.autograd.grad(ref.saccade_crop(x2, INDS, windows, 31), x2, grad_out)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-5)
    assert g1.abs().sum() > 0


def test_non_contiguous_images():
    base = _images((2, 3, 40, 50), seed=6)
    crops, _ = saccade_crop(base, CENTERS, ZOOMS, 17, INDS)
    grad_out = _images((6, 3, 17, 17), seed=7)
    g_ref, = torch.autograd.grad(saccade_crop(base.requires_grad_(), CENTERS, ZOOMS, 17, INDS)[0], base, grad_out)
    for images in (base.detach().contiguous(memory_format=torch.channels_last),
                   base.detach().transpose(2, 3).contiguous().transpose(2, 3)):
        assert not images.is_contiguous()
        images.requires_grad_()
        out, _ = saccade_crop(images, CENTERS.t().contiguous().t(), ZOOMS, 17, INDS)
        assert torch.equal(out, crops)
        g, = torch.autograd.grad(out, images, grad_out)
        assert torch.equal(g, g_ref)


def test_edge_cases():
    images = _images((1, 3, 1, 1), seed=8).requires_grad_()
    crops, _ = saccade_crop(images, torch.tensor([[0., 0.]]), 0.5, 3)  # one-pixel image, scalar zoom
    assert crops.shape == (1, 3, 3, 3)
    crops.sum().backward()
    assert images.grad.shape == images.shape
    # no crops
    crops, transforms = saccade_crop(_images((2, 3, 8, 8)), torch.zeros(0, 2), torch.zeros(0), 5,
                                     torch.zeros(0, dtype=torch.long))
    assert crops.shape == (0, 3, 5, 5) and transforms.shape == (0, 3)
    # empty image batch and no crops
    empty = torch.zeros(0, 3, 8, 8, requires_grad=True)
    crops, _ = saccade_crop(empty, torch.zeros(0, 2), torch.zeros(0), 5, torch.zeros(0, dtype=torch.long))
    assert crops.shape == (0, 3, 5, 5)
    crops.sum().backward()
    assert empty.grad.shape == empty.shape
    # out_size 1
    crops, _ = saccade_crop(_images((1, 1, 8, 8)), torch.tensor([[4., 4.]]), torch.tensor([1.0]), 1)
    assert crops.shape == (1, 1, 1, 1)


def test_opcheck():
    images = _images((2, 2, 9, 11), seed=9).requires_grad_()
    windows, _ = saccade_windows(torch.tensor([[4., 5.], [1., 9.]]), torch.tensor([1.7, 0.8]), 6)
    inds = torch.tensor([0, 1])
    tests = ('test_schema', 'test_autograd_registration', 'test_faketensor')
    torch.library.opcheck(torch.ops.mmkp.saccade_crop.default, (images, inds, windows, 6), test_utils=tests)
    torch.library.opcheck(torch.ops.mmkp.saccade_crop_backward.default,
                          (torch.randn(2, 2, 6, 6), inds, windows, [2, 2, 9, 11]), test_utils=tests)


def test_argument_errors():
    images = _images((2, 3, 8, 8))
    centers, zooms, inds = torch.tensor([[4., 4.]]), torch.tensor([1.0]), torch.tensor([0])
    with pytest.raises(ValueError, match='image_inds is required'):
        saccade_crop(images, centers, zooms, 5)
    with pytest.raises(ValueError, match=r'image_inds must lie in \[0, 2\)'):
        saccade_crop(images, centers, zooms, 5, torch.tensor([2]))
    with pytest.raises(TypeError, match='image_inds must be an integer'):
        saccade_crop(images, centers, zooms, 5, torch.tensor([0.]))
    with pytest.raises(ValueError, match='zooms must be finite and > 0'):
        saccade_crop(images, centers, torch.tensor([0.0]), 5, inds)
    with pytest.raises(ValueError, match='zooms must be a'):
        saccade_crop(images, centers, torch.tensor([1.0, 2.0]), 5, inds)
    with pytest.raises(TypeError, match='images must be a floating'):
        saccade_crop(images.long(), centers, zooms, 5, inds)
    with pytest.raises(ValueError, match='images must be a 4-d'):
        saccade_crop(images[0], centers, zooms, 5, inds)
    with pytest.raises(ValueError, match='centers must be a'):
        saccade_crop(images, centers.t(), zooms, 5, inds)
    with pytest.raises(TypeError, match='out_size must be an int'):
        saccade_crop(images, centers, zooms, 5.0, inds)
    with pytest.raises(ValueError, match='out_size must be >= 1'):
        saccade_crop(images, centers, zooms, 0, inds)


# ------------------------------------------------------------------------------------------------------------------
# CUDA against CPU (all dtypes); skipped without a GPU (conftest.py)


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_cuda_matches_cpu(dtype):
    images = _images((2, 3, 40, 50), dtype, seed=10)
    grad_out = _images((6, 3, 31, 31), dtype, seed=11)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype in (torch.float32, torch.float64) else dict(rtol=2e-2, atol=2e-2)
    outs, grads = [], []
    for device in ('cpu', 'cuda'):
        x = images.to(device).requires_grad_()
        crops, transforms = saccade_crop(x, CENTERS.to(device), ZOOMS.to(device), 31, INDS.to(device))
        assert crops.device.type == device and transforms.device.type == device
        g, = torch.autograd.grad(crops, x, grad_out.to(device))
        outs.append(crops.cpu())
        grads.append(g.cpu())
    torch.testing.assert_close(outs[1], outs[0], **tol)
    torch.testing.assert_close(grads[1], grads[0], **tol)
