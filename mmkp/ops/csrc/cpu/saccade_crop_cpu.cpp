// CPU kernels of the batched saccade crop (CornerNet-Lite core/test/cornernet_saccade.py::crop_image_gpu /
// prepare_images, re-expressed as one bilinear resampling per crop; see csrc/common/mmkp_common.h and
// mmkp/ops/saccade_crop.py for the exact convention).
//
// The resampling is separable and its taps are monotone in the crop pixel, so each (crop, channel) plane is walked
// row by row with a two-slot cache of source rows already interpolated along x (lerp_taps over the x taps); an
// output row is then one vectorised lerp_taps of two cached rows along y. The arithmetic and its order are those
// of bilinear_blend (x first, then y), which the CUDA kernel evaluates per pixel.
//
// Forward: parallel over (crop, channel) planes. Backward: parallel over image planes (n, c); each walks the crops
// taken from image n in order, accumulates the y-weighted output gradients of a source row in a row slot, and
// scatters the slot along x when the walk leaves that row; so the result is deterministic and race-free even when
// crops overlap.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
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

// x taps of one crop as arrays (indices, weights in the op-math type; zero weights outside the image).
template <typename A>
struct XTaps {
  std::vector<int64_t> i0, i1;
  std::vector<A> w0, w1;
  std::vector<char> valid;
  explicit XTaps(int64_t n) : i0(n), i1(n), w0(n), w1(n), valid(n) {}
  void load(const BilinearTap* taps, int64_t n) {
    for (int64_t o = 0; o < n; ++o) {
      i0[o] = taps[o].i0;
      i1[o] = taps[o].i1;
      w0[o] = static_cast<A>(taps[o].w0);
      w1[o] = static_cast<A>(taps[o].w1);
      valid[o] = taps[o].valid;
    }
  }
};

// tmp[o] = wx0[o] * row[i0[o]] + wx1[o] * row[i1[o]]
template <typename T, typename A>
inline void lerp_row_x(const T* row, const XTaps<A>& tx, int64_t n, A* tmp) {
  const int64_t* i0 = tx.i0.data();
  const int64_t* i1 = tx.i1.data();
  const A* w0 = tx.w0.data();
  const A* w1 = tx.w1.data();
  for (int64_t o = 0; o < n; ++o) {
    tmp[o] = lerp_taps(w0[o], static_cast<A>(row[i0[o]]), w1[o], static_cast<A>(row[i1[o]]));
  }
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
      XTaps<acc_t> tx(out_size);
      std::vector<acc_t> buf0(out_size), buf1(out_size);
      int64_t loaded_k = -1;
      for (int64_t kc = begin; kc < end; ++kc) {
        const int64_t k = kc / C, c = kc % C;
        if (k != loaded_k) {
          tx.load(taps.data() + (k * 2 + 1) * out_size, out_size);
          loaded_k = k;
        }
        const scalar_t* plane = src + (ip[k] * C + c) * H * W;
        const BilinearTap* ty = taps.data() + (k * 2 + 0) * out_size;
        scalar_t* o = dst + kc * out_size * out_size;
        acc_t* t0 = buf0.data();
        acc_t* t1 = buf1.data();
        int64_t id0 = -1, id1 = -1;  // source rows held by t0 / t1
        for (int64_t oy = 0; oy < out_size; ++oy) {
          scalar_t* orow = o + oy * out_size;
          if (!ty[oy].valid) {
            std::fill(orow, orow + out_size, scalar_t(0));
            continue;
          }
          const int64_t r0 = ty[oy].i0, r1 = ty[oy].i1;
          if (id0 != r0) {
            if (id1 == r0) {
              std::swap(t0, t1);
              std::swap(id0, id1);
            } else {
              lerp_row_x(plane + r0 * W, tx, out_size, t0);
              id0 = r0;
            }
          }
          const acc_t* s1 = t0;
          if (r1 != r0) {
            if (id1 != r1) {
              lerp_row_x(plane + r1 * W, tx, out_size, t1);
              id1 = r1;
            }
            s1 = t1;
          }
          const acc_t wy0 = static_cast<acc_t>(ty[oy].w0), wy1 = static_cast<acc_t>(ty[oy].w1);
          const char* vx = tx.valid.data();
          for (int64_t ox = 0; ox < out_size; ++ox) {
            const acc_t v = lerp_taps(wy0, t0[ox], wy1, s1[ox]);
            orow[ox] = vx[ox] ? static_cast<scalar_t>(v) : scalar_t(0);
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
      XTaps<acc_t> tx(out_size);
      std::vector<acc_t> buf0(out_size), buf1(out_size);
      for (int64_t nc = begin; nc < end; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        acc_t* plane = dst + nc * H * W;
        for (int64_t k = 0; k < K; ++k) {
          if (ip[k] != n) continue;
          tx.load(taps.data() + (k * 2 + 1) * out_size, out_size);
          const BilinearTap* ty = taps.data() + (k * 2 + 0) * out_size;
          const scalar_t* gk = g + (k * C + c) * out_size * out_size;
          acc_t* a0 = buf0.data();
          acc_t* a1 = buf1.data();
          int64_t id0 = -1, id1 = -1;  // source rows whose y-weighted gradients a0 / a1 accumulate
          // scatter a row slot along x into the image plane (transpose of lerp_row_x), then clear it
          auto flush = [&](int64_t row, acc_t* acc) {
            if (row < 0) return;
            acc_t* prow = plane + row * W;
            for (int64_t ox = 0; ox < out_size; ++ox) {
              if (!tx.valid[ox]) continue;
              prow[tx.i0[ox]] += tx.w0[ox] * acc[ox];
              prow[tx.i1[ox]] += tx.w1[ox] * acc[ox];
            }
            std::fill(acc, acc + out_size, acc_t(0));
          };
          std::fill(a0, a0 + out_size, acc_t(0));
          std::fill(a1, a1 + out_size, acc_t(0));
          for (int64_t oy = 0; oy < out_size; ++oy) {
            if (!ty[oy].valid) continue;
            // rows are non-decreasing in oy: a row that leaves the slots is never referenced again
            const int64_t r0 = ty[oy].i0, r1 = ty[oy].i1;
            if (id0 != r0) {
              if (id1 == r0) {
                std::swap(a0, a1);
                std::swap(id0, id1);
              } else {
                flush(id0, a0);
                id0 = r0;
              }
            }
            acc_t* s1 = a0;
            if (r1 != r0) {
              if (id1 != r1) {
                flush(id1, a1);
                id1 = r1;
              }
              s1 = a1;
            }
            const acc_t wy0 = static_cast<acc_t>(ty[oy].w0), wy1 = static_cast<acc_t>(ty[oy].w1);
            const scalar_t* grow = gk + oy * out_size;
            for (int64_t ox = 0; ox < out_size; ++ox) a0[ox] += wy0 * static_cast<acc_t>(grow[ox]);
            for (int64_t ox = 0; ox < out_size; ++ox) s1[ox] += wy1 * static_cast<acc_t>(grow[ox]);
          }
          flush(id0, a0);
          flush(id1, a1);
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
