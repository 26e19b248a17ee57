// CPU kernels of the batched saccade crop (CornerNet-Lite core/test/cornernet_saccade.py::crop_image_gpu /
// prepare_images, re-expressed as one bilinear resampling per crop; see csrc/common/mmkp_common.h and
// mmkp/ops/saccade_crop.py for the exact convention).
//
// Forward: parallel over (crop, channel) planes; the taps of every crop row / column are computed once per crop.
// Backward: parallel over image planes (n, c); each walks the crops taken from image n in order and scatter-adds
// into its own plane, so the result is deterministic and race-free even when crops overlap.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/mmkp_common.h"
#include "ops_utils.h"

namespace mmkp {
namespace {

// Taps of every crop: taps[(k * 2 + axis) * out_size + o], axis 0 = y, 1 = x.
std::vector<BilinearTap> crop_taps(const float* windows, int64_t K, int64_t out_size, int64_t H, int64_t W) {
  std::vector<BilinearTap> taps(static_cast<size_t>(K * 2 * out_size));
  at::parallel_for(0, K, 64, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const float y0 = windows[k * 3 + 0], x0 = windows[k * 3 + 1], side = windows[k * 3 + 2];
      for (int64_t o = 0; o < out_size; ++o) {
        taps[(k * 2 + 0) * out_size + o] = saccade_tap(o, y0, side, out_size, H);
        taps[(k * 2 + 1) * out_size + o] = saccade_tap(o, x0, side, out_size, W);
      }
    }
  });
  return taps;
}

void check_inds_cpu(const at::Tensor& inds, int64_t N) {
  if (inds.numel() == 0) return;
  const int64_t lo = inds.min().item<int64_t>(), hi = inds.max().item<int64_t>();
  TORCH_CHECK_INDEX(lo >= 0 && hi < N, "mmkp: image_inds must lie in [0, ", N, "), got values in [", lo, ", ", hi,
                    "]");
}

at::Tensor saccade_crop_cpu(const at::Tensor& images, const at::Tensor& image_inds, const at::Tensor& windows,
                            int64_t out_size) {
  check_saccade_args(images, image_inds, windows, out_size);
  const at::Tensor img = images.contiguous();
  const at::Tensor inds = image_inds.contiguous();
  const at::Tensor win = windows.contiguous();
  const int64_t N = img.size(0), C = img.size(1), H = img.size(2), W = img.size(3), K = win.size(0);
  check_inds_cpu(inds, N);
  at::Tensor out = at::empty({K, C, out_size, out_size}, img.options());
  if (out.numel() == 0) return out;
  TORCH_CHECK_VALUE(H > 0 && W > 0, "mmkp: images must have H, W >= 1 to be cropped");
  const std::vector<BilinearTap> taps = crop_taps(win.const_data_ptr<float>(), K, out_size, H, W);
  const int64_t* ip = inds.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, img.scalar_type(), "mmkp_saccade_crop_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = img.const_data_ptr<scalar_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / (out_size * out_size));
    at::parallel_for(0, K * C, grain, [&](int64_t begin, int64_t end) {
      for (int64_t kc = begin; kc < end; ++kc) {
        const int64_t k = kc / C, c = kc % C;
        const scalar_t* plane = src + (ip[k] * C + c) * H * W;
        const BilinearTap* ty = taps.data() + (k * 2 + 0) * out_size;
        const BilinearTap* tx = taps.data() + (k * 2 + 1) * out_size;
        scalar_t* o = dst + kc * out_size * out_size;
        for (int64_t oy = 0; oy < out_size; ++oy) {
          scalar_t* orow = o + oy * out_size;
          if (!ty[oy].valid) {
            for (int64_t ox = 0; ox < out_size; ++ox) orow[ox] = scalar_t(0);
            continue;
          }
          const scalar_t* r0 = plane + ty[oy].i0 * W;
          const scalar_t* r1 = plane + ty[oy].i1 * W;
          for (int64_t ox = 0; ox < out_size; ++ox) {
            const BilinearTap& t = tx[ox];
            if (!t.valid) {
              orow[ox] = scalar_t(0);
              continue;
            }
            orow[ox] = static_cast<scalar_t>(bilinear_blend<acc_t>(
                ty[oy], t, static_cast<acc_t>(r0[t.i0]), static_cast<acc_t>(r0[t.i1]), static_cast<acc_t>(r1[t.i0]),
                static_cast<acc_t>(r1[t.i1])));
          }
        }
      }
    });
  });
  return out;
}

at::Tensor saccade_crop_backward_cpu(const at::Tensor& grad_out, const at::Tensor& image_inds,
                                     const at::Tensor& windows, at::IntArrayRef image_shape) {
  TORCH_CHECK_VALUE(image_shape.size() == 4, "mmkp: image_shape must have 4 entries (N, C, H, W)");
  const int64_t N = image_shape[0], C = image_shape[1], H = image_shape[2], W = image_shape[3];
  TORCH_CHECK_VALUE(windows.dim() == 2 && windows.size(1) == 3 && windows.scalar_type() == at::kFloat,
                    "mmkp: windows must be a (K, 3) float32 tensor, got ", windows.sizes());
  TORCH_CHECK_VALUE(image_inds.dim() == 1 && image_inds.size(0) == windows.size(0) &&
                        image_inds.scalar_type() == at::kLong,
                    "mmkp: image_inds must be a (K,) int64 tensor");
  const int64_t K = windows.size(0);
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == K && grad_out.size(1) == C &&
                        grad_out.size(2) == grad_out.size(3),
                    "mmkp: grad_out must be (K, C, out_size, out_size), got ", grad_out.sizes());
  const int64_t out_size = grad_out.size(2);
  const at::Tensor go = grad_out.contiguous();
  const at::Tensor inds = image_inds.contiguous();
  const at::Tensor win = windows.contiguous();
  const auto acc_type = at::toOpMathType(go.scalar_type());
  at::Tensor gacc = at::zeros({N, C, H, W}, go.options().dtype(acc_type));
  if (gacc.numel() == 0 || go.numel() == 0) return gacc.to(go.scalar_type());
  check_inds_cpu(inds, N);
  const std::vector<BilinearTap> taps = crop_taps(win.const_data_ptr<float>(), K, out_size, H, W);
  const int64_t* ip = inds.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "mmkp_saccade_crop_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g = go.const_data_ptr<scalar_t>();
    acc_t* dst = gacc.mutable_data_ptr<acc_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, K * out_size * out_size));
    at::parallel_for(0, N * C, grain, [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        acc_t* plane = dst + nc * H * W;
        for (int64_t k = 0; k < K; ++k) {
          if (ip[k] != n) continue;
          const BilinearTap* ty = taps.data() + (k * 2 + 0) * out_size;
          const BilinearTap* tx = taps.data() + (k * 2 + 1) * out_size;
          const scalar_t* gk = g + (k * C + c) * out_size * out_size;
          for (int64_t oy = 0; oy < out_size; ++oy) {
            if (!ty[oy].valid) continue;
            acc_t* r0 = plane + ty[oy].i0 * W;
            acc_t* r1 = plane + ty[oy].i1 * W;
            const scalar_t* grow = gk + oy * out_size;
            for (int64_t ox = 0; ox < out_size; ++ox) {
              const BilinearTap& t = tx[ox];
              if (!t.valid) continue;
              acc_t w[4];
              bilinear_grad_weights<acc_t>(ty[oy], t, w);
              const acc_t gv = static_cast<acc_t>(grow[ox]);
              r0[t.i0] += w[0] * gv;
              r0[t.i1] += w[1] * gv;
              r1[t.i0] += w[2] * gv;
              r1[t.i1] += w[3] * gv;
            }
          }
        }
      }
    });
  });
  return gacc.to(go.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(mmkp, CPU, m) {
  m.impl("saccade_crop", &saccade_crop_cpu);
  m.impl("saccade_crop_backward", &saccade_crop_backward_cpu);
}

}  // namespace mmkp
