// CPU kernels of the directional, fused corner and fused center pools.
//
// Semantics and tie rule: csrc/common/mmkp_common.h (after CornerNet-Lite
// core/models/py_utils/_cpools/src/*_pool.cpp and Duankaiwen/CenterNet models/py_utils/_cpools/src/*.cpp).
//
// Layout: inputs are made contiguous; the N*C planes of H x W are split over threads with at::parallel_for.
// * Along H (top/bottom) a plane is walked row by row in scan order; every row is a contiguous, vectorisable loop
//   over W (the running maxima live in the previous output row).
// * Along W (left/right) a scan along a row is a dependency chain; instead, blocks of kRowGroup rows are transposed
//   into a small (W x kRowGroup) buffer that stays in L1, scanned there like a vertical plane (vectorised over the
//   kRowGroup rows), and transposed back (float32: 4 x 4 SSE tile transposes). Leftover rows (H % kRowGroup) use a
//   plain sequential scan.
// * Backward recomputes the running maxima (no index tensor is stored): pass 1 writes them into grad_in (they are
//   elements of x, hence exact in any dtype), pass 2 walks in reverse scan order, finds the "records" and routes
//   the accumulated output gradients to them (route_step), overwriting the scratch as it goes. Each element of
//   grad_in is written, no scatter, no zero fill.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#if defined(__SSE2__) && !defined(MMKP_NO_SSE_TRANSPOSE)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif
#include <tuple>
#include <vector>

#include "common/mmkp_common.h"
#include "ops_utils.h"

namespace mmkp {
namespace {

constexpr int kRowGroup = 8;

// Planes per parallel_for chunk: at least ~64k elements of work per chunk, so that small maps run inline on the
// calling thread instead of paying for a parallel region.
inline int64_t plane_grain(int64_t H, int64_t W) {
  const int64_t plane = H * W > 0 ? H * W : 1;
  const int64_t grain = (int64_t{1} << 16) / plane;
  return grain > 1 ? grain : 1;
}

// ----------------------------------------------------------------------------------------------------------------
// Along H, one plane: out = running max of x in scan order (rows first, first+step, ...).
template <typename T>
inline void max_row(const T* __restrict x, const T* __restrict prev, T* __restrict out, int64_t W) {
  for (int64_t w = 0; w < W; ++w) out[w] = pool_step(x[w], prev[w]);
}

template <typename T>
void vertical_forward_plane(const T* x, T* out, int64_t H, int64_t W, bool suffix) {
  const int64_t first = suffix ? H - 1 : 0;
  const int64_t step = suffix ? -1 : 1;
  std::memcpy(out + first * W, x + first * W, sizeof(T) * W);
  for (int64_t k = 1; k < H; ++k) {
    const int64_t h = first + k * step;
    max_row(x + h * W, out + (h - step) * W, out + h * W, W);
  }
}

template <typename T, typename A>
inline void route_row(const T* __restrict x, const T* __restrict g, const T* __restrict prev_max,
                      T* __restrict gin, A* __restrict acc, int64_t W) {
  for (int64_t w = 0; w < W; ++w) {
    const bool rec = pool_takes(x[w], prev_max[w]);
    gin[w] = static_cast<T>(route_step<A>(rec, static_cast<A>(g[w]), acc[w]));
  }
}

// Along H, one plane: gin = d(pool(x)) / dx applied to g. `acc` is W accumulators of scratch.
template <typename T, typename A>
void vertical_backward_plane(const T* x, const T* g, T* gin, int64_t H, int64_t W, bool suffix, A* acc) {
  const int64_t first = suffix ? H - 1 : 0;
  const int64_t step = suffix ? -1 : 1;
  // pass 1: running maxima in scan order, into gin
  std::memcpy(gin + first * W, x + first * W, sizeof(T) * W);
  for (int64_t k = 1; k < H; ++k) {
    const int64_t h = first + k * step;
    max_row(x + h * W, gin + (h - step) * W, gin + h * W, W);
  }
  // pass 2: reverse scan order; row h compares with the running max of the row before it in scan order
  for (int64_t w = 0; w < W; ++w) acc[w] = A(0);
  for (int64_t k = H - 1; k >= 1; --k) {
    const int64_t h = first + k * step;
    route_row(x + h * W, g + h * W, gin + (h - step) * W, gin + h * W, acc, W);
  }
  const T* g0 = g + first * W;
  T* gin0 = gin + first * W;
  for (int64_t w = 0; w < W; ++w) gin0[w] = static_cast<T>(route_step<A>(true, static_cast<A>(g0[w]), acc[w]));
}

// ----------------------------------------------------------------------------------------------------------------
// Along W, R rows at once (rows are W apart): out = running max in scan order (or out += it when kAccumulate).
template <typename T, int R, bool kAccumulate>
inline void horizontal_forward_rows(const T* x, T* out, int64_t W, bool suffix) {
  const int64_t first = suffix ? W - 1 : 0;
  const int64_t step = suffix ? -1 : 1;
  T run[R];
  for (int r = 0; r < R; ++r) {
    run[r] = x[r * W + first];
    if (kAccumulate) {
      out[r * W + first] += run[r];
    } else {
      out[r * W + first] = run[r];
    }
  }
  int64_t w = first;
  for (int64_t k = 1; k < W; ++k) {
    w += step;
    for (int r = 0; r < R; ++r) {
      run[r] = pool_step(x[r * W + w], run[r]);
      if (kAccumulate) {
        out[r * W + w] += run[r];
      } else {
        out[r * W + w] = run[r];
      }
    }
  }
}

// dst[w * R + r] = src[r * W + w] for a block of R rows.
template <typename T, int R>
inline void transpose_in(const T* __restrict src, int64_t W, T* __restrict dst) {
  for (int r = 0; r < R; ++r) {
    const T* row = src + r * W;
    for (int64_t w = 0; w < W; ++w) dst[w * R + r] = row[w];
  }
}

// dst[r * W + w] (+)= src[w * R + r].
template <typename T, int R, bool kAccumulate>
inline void transpose_out(const T* __restrict src, int64_t W, T* __restrict dst) {
  for (int r = 0; r < R; ++r) {
    T* row = dst + r * W;
    for (int64_t w = 0; w < W; ++w) {
      if (kAccumulate) {
        row[w] += src[w * R + r];
      } else {
        row[w] = src[w * R + r];
      }
    }
  }
}

#if defined(__SSE2__) && !defined(MMKP_NO_SSE_TRANSPOSE)
// float32 blocks: 4 x 4 tiles transposed in SSE registers (about twice the speed of the element loops above, which
// gcc leaves scalar); the columns left over (W % 4) take the element loops.
template <>
inline void transpose_in<float, 8>(const float* __restrict src, int64_t W, float* __restrict dst) {
  int64_t w = 0;
  for (; w + 4 <= W; w += 4) {
    for (int r = 0; r < 8; r += 4) {
      __m128 a = _mm_loadu_ps(src + (r + 0) * W + w), b = _mm_loadu_ps(src + (r + 1) * W + w);
      __m128 c = _mm_loadu_ps(src + (r + 2) * W + w), d = _mm_loadu_ps(src + (r + 3) * W + w);
      _MM_TRANSPOSE4_PS(a, b, c, d);
      _mm_storeu_ps(dst + (w + 0) * 8 + r, a);
      _mm_storeu_ps(dst + (w + 1) * 8 + r, b);
      _mm_storeu_ps(dst + (w + 2) * 8 + r, c);
      _mm_storeu_ps(dst + (w + 3) * 8 + r, d);
    }
  }
  for (int r = 0; r < 8; ++r) {
    for (int64_t v = w; v < W; ++v) dst[v * 8 + r] = src[r * W + v];
  }
}

template <bool kAccumulate>
inline void transpose_out_f32x8(const float* __restrict src, int64_t W, float* __restrict dst) {
  int64_t w = 0;
  for (; w + 4 <= W; w += 4) {
    for (int r = 0; r < 8; r += 4) {
      __m128 a = _mm_loadu_ps(src + (w + 0) * 8 + r), b = _mm_loadu_ps(src + (w + 1) * 8 + r);
      __m128 c = _mm_loadu_ps(src + (w + 2) * 8 + r), d = _mm_loadu_ps(src + (w + 3) * 8 + r);
      _MM_TRANSPOSE4_PS(a, b, c, d);
      float* o0 = dst + (r + 0) * W + w;
      float* o1 = dst + (r + 1) * W + w;
      float* o2 = dst + (r + 2) * W + w;
      float* o3 = dst + (r + 3) * W + w;
      if (kAccumulate) {
        a = _mm_add_ps(_mm_loadu_ps(o0), a);
        b = _mm_add_ps(_mm_loadu_ps(o1), b);
        c = _mm_add_ps(_mm_loadu_ps(o2), c);
        d = _mm_add_ps(_mm_loadu_ps(o3), d);
      }
      _mm_storeu_ps(o0, a);
      _mm_storeu_ps(o1, b);
      _mm_storeu_ps(o2, c);
      _mm_storeu_ps(o3, d);
    }
  }
  for (int r = 0; r < 8; ++r) {
    for (int64_t v = w; v < W; ++v) {
      if (kAccumulate) {
        dst[r * W + v] += src[v * 8 + r];
      } else {
        dst[r * W + v] = src[v * 8 + r];
      }
    }
  }
}

template <>
inline void transpose_out<float, 8, false>(const float* __restrict src, int64_t W, float* __restrict dst) {
  transpose_out_f32x8<false>(src, W, dst);
}

template <>
inline void transpose_out<float, 8, true>(const float* __restrict src, int64_t W, float* __restrict dst) {
  transpose_out_f32x8<true>(src, W, dst);
}
#endif  // __SSE2__

// In-place running max in scan order over the W "rows" of a transposed (W x R) block. The maxima are carried in
// registers and every row step is one vector operation (`omp simd`: gcc does not vectorise the fixed-width select
// on its own).
template <typename T, int R>
inline void scan_transposed(T* buf, int64_t W, bool suffix) {
  const int64_t first = suffix ? W - 1 : 0;
  const int64_t step = suffix ? -1 : 1;
  T run[R];
  for (int r = 0; r < R; ++r) run[r] = buf[first * R + r];
  for (int64_t k = 1; k < W; ++k) {
    T* row = buf + (first + k * step) * R;
#pragma omp simd
    for (int r = 0; r < R; ++r) {
      run[r] = pool_step(row[r], run[r]);
      row[r] = run[r];
    }
  }
}

// Backward over the W "rows" of transposed (W x R) blocks of x and g into st (pass 1 leaves the running maxima in
// st, pass 2 overwrites them with the routed gradients), as vertical_backward_plane with R fixed at compile time.
template <typename T, typename A, int R>
inline void backward_transposed(const T* xt, const T* gt, T* st, int64_t W, bool suffix) {
  const int64_t first = suffix ? W - 1 : 0;
  const int64_t step = suffix ? -1 : 1;
  T run[R];
  for (int r = 0; r < R; ++r) {
    run[r] = xt[first * R + r];
    st[first * R + r] = run[r];
  }
  for (int64_t k = 1; k < W; ++k) {
    const int64_t o = (first + k * step) * R;
#pragma omp simd
    for (int r = 0; r < R; ++r) {
      run[r] = pool_step(xt[o + r], run[r]);
      st[o + r] = run[r];
    }
  }
  A acc[R];
  for (int r = 0; r < R; ++r) acc[r] = A(0);
  for (int64_t k = W - 1; k >= 1; --k) {
    const int64_t o = (first + k * step) * R;
    const int64_t prev = o - step * R;
#pragma omp simd
    for (int r = 0; r < R; ++r) {
      const bool rec = pool_takes(xt[o + r], st[prev + r]);
      st[o + r] = static_cast<T>(route_step<A>(rec, static_cast<A>(gt[o + r]), acc[r]));
    }
  }
  for (int r = 0; r < R; ++r) {
    st[first * R + r] = static_cast<T>(route_step<A>(true, static_cast<A>(gt[first * R + r]), acc[r]));
  }
}

// `buf` holds W * kRowGroup elements of scratch.
template <typename T, bool kAccumulate>
void horizontal_forward_plane(const T* x, T* out, int64_t H, int64_t W, bool suffix, T* buf) {
  int64_t h = 0;
  for (; h + kRowGroup <= H; h += kRowGroup) {
    transpose_in<T, kRowGroup>(x + h * W, W, buf);
    scan_transposed<T, kRowGroup>(buf, W, suffix);
    transpose_out<T, kRowGroup, kAccumulate>(buf, W, out + h * W);
  }
  for (; h < H; ++h) horizontal_forward_rows<T, 1, kAccumulate>(x + h * W, out + h * W, W, suffix);
}

template <typename T, typename A, int R>
inline void horizontal_backward_rows(const T* x, const T* g, T* gin, int64_t W, bool suffix) {
  const int64_t first = suffix ? W - 1 : 0;
  const int64_t step = suffix ? -1 : 1;
  // pass 1: running maxima into gin
  T run[R];
  for (int r = 0; r < R; ++r) {
    run[r] = x[r * W + first];
    gin[r * W + first] = run[r];
  }
  int64_t w = first;
  for (int64_t k = 1; k < W; ++k) {
    w += step;
    for (int r = 0; r < R; ++r) {
      run[r] = pool_step(x[r * W + w], run[r]);
      gin[r * W + w] = run[r];
    }
  }
  // pass 2: reverse scan order
  A acc[R];
  for (int r = 0; r < R; ++r) acc[r] = A(0);
  for (int64_t k = W - 1; k >= 1; --k) {
    const int64_t wk = first + k * step;
    for (int r = 0; r < R; ++r) {
      const bool rec = pool_takes(x[r * W + wk], gin[r * W + wk - step]);
      gin[r * W + wk] = static_cast<T>(route_step<A>(rec, static_cast<A>(g[r * W + wk]), acc[r]));
    }
  }
  for (int r = 0; r < R; ++r) {
    gin[r * W + first] = static_cast<T>(route_step<A>(true, static_cast<A>(g[r * W + first]), acc[r]));
  }
}

// Scratch of one thread: three transposed (W x kRowGroup) blocks for the horizontal paths and W accumulators for
// the vertical backward.
template <typename T, typename A>
struct Scratch {
  std::vector<T> xt, gt, st;
  std::vector<A> acc;
  explicit Scratch(int64_t W) : xt(W * kRowGroup), gt(W * kRowGroup), st(W * kRowGroup), acc(W) {}
};

template <typename T, typename A>
void horizontal_backward_plane(const T* x, const T* g, T* gin, int64_t H, int64_t W, bool suffix,
                               Scratch<T, A>& scratch) {
  int64_t h = 0;
  for (; h + kRowGroup <= H; h += kRowGroup) {
    transpose_in<T, kRowGroup>(x + h * W, W, scratch.xt.data());
    transpose_in<T, kRowGroup>(g + h * W, W, scratch.gt.data());
    backward_transposed<T, A, kRowGroup>(scratch.xt.data(), scratch.gt.data(), scratch.st.data(), W, suffix);
    transpose_out<T, kRowGroup, false>(scratch.st.data(), W, gin + h * W);
  }
  for (; h < H; ++h) horizontal_backward_rows<T, A, 1>(x + h * W, g + h * W, gin + h * W, W, suffix);
}

// ----------------------------------------------------------------------------------------------------------------
// Dispatch helpers over planes.
template <typename T>
void pool_forward_plane(const T* x, T* out, int64_t H, int64_t W, Direction d, bool accumulate, T* buf) {
  if (is_vertical(d)) {
    TORCH_INTERNAL_ASSERT(!accumulate);
    vertical_forward_plane(x, out, H, W, is_suffix(d));
  } else if (accumulate) {
    horizontal_forward_plane<T, true>(x, out, H, W, is_suffix(d), buf);
  } else {
    horizontal_forward_plane<T, false>(x, out, H, W, is_suffix(d), buf);
  }
}

template <typename T, typename A>
void pool_backward_plane(const T* x, const T* g, T* gin, int64_t H, int64_t W, Direction d,
                         Scratch<T, A>& scratch) {
  if (is_vertical(d)) {
    vertical_backward_plane<T, A>(x, g, gin, H, W, is_suffix(d), scratch.acc.data());
  } else {
    horizontal_backward_plane<T, A>(x, g, gin, H, W, is_suffix(d), scratch);
  }
}

// ----------------------------------------------------------------------------------------------------------------
// Center pool, one plane (columns vectorised over W; rows reduced with kLanes partial results).
//
// Forward: out[h, w] = colmax(a)[w] + rowmax(b)[h].
// Backward: the column sum of g goes to the argmax of the column of a, the row sum of g to the argmax of the row of
// b; ties go to the largest index (first met scanning from index L-1 with a strict comparison, as
// bottom(top(a)) / right(left(b)) of the original route them).

constexpr int kLanes = 8;

// colmax over H (values only), vectorised over W.
template <typename T>
void column_max(const T* a, int64_t H, int64_t W, T* __restrict best) {
  std::memcpy(best, a + (H - 1) * W, sizeof(T) * W);
  for (int64_t h = H - 2; h >= 0; --h) {
    const T* __restrict row = a + h * W;
    for (int64_t w = 0; w < W; ++w) best[w] = pool_step(row[w], best[w]);
  }
}

// colmax over H (values and argmax), vectorised over W, and the column sums of g.
template <typename T, typename A>
void column_argmax(const T* a, const T* g, int64_t H, int64_t W, T* __restrict best, int32_t* __restrict best_idx,
                   A* __restrict colsum) {
  std::memcpy(best, a + (H - 1) * W, sizeof(T) * W);
  for (int64_t w = 0; w < W; ++w) best_idx[w] = static_cast<int32_t>(H - 1);
  for (int64_t h = H - 2; h >= 0; --h) {
    const T* __restrict row = a + h * W;
    const int32_t hi = static_cast<int32_t>(h);
    for (int64_t w = 0; w < W; ++w) {
      const T v = row[w];
      const T cur = best[w];
      // all-ones when v takes over: a bit-mask select, which the loop vectoriser accepts next to the float select
      const int32_t take = -static_cast<int32_t>(pool_takes(v, cur));
      best[w] = pool_step(v, cur);
      best_idx[w] = (hi & take) | (best_idx[w] & ~take);
    }
  }
  for (int64_t w = 0; w < W; ++w) colsum[w] = A(0);
  for (int64_t h = 0; h < H; ++h) {
    const T* row = g + h * W;
    for (int64_t w = 0; w < W; ++w) colsum[w] += static_cast<A>(row[w]);
  }
}

// Maximum of a contiguous line (value only): kLanes independent partial maxima, so that the loop vectorises.
template <typename T>
inline T line_max(const T* x, int64_t n) {
  if (n < kLanes) {
    T m = x[n - 1];
    for (int64_t i = n - 2; i >= 0; --i) m = pool_step(x[i], m);
    return m;
  }
  T m[kLanes];
  for (int j = 0; j < kLanes; ++j) m[j] = x[j];
  int64_t i = kLanes;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) m[j] = pool_step(x[i + j], m[j]);
  }
  for (; i < n; ++i) m[0] = pool_step(x[i], m[0]);
  T r = m[0];
  for (int j = 1; j < kLanes; ++j) r = pool_step(m[j], r);
  return r;
}

// Sum of a contiguous line in the op-math type, kLanes partial sums.
template <typename T, typename A>
inline A line_sum(const T* x, int64_t n) {
  A s[kLanes];
  for (int j = 0; j < kLanes; ++j) s[j] = A(0);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) s[j] += static_cast<A>(x[i + j]);
  }
  for (; i < n; ++i) s[0] += static_cast<A>(x[i]);
  A r = s[0];
  for (int j = 1; j < kLanes; ++j) r += s[j];
  return r;
}

// Arg-max of a contiguous line under the center tie rule: the element a scan from index n-1 with a strict
// comparison ends on is the first occurrence of the maximum met from that end, i.e. its largest index.
template <typename T>
inline int32_t line_argmax_last(const T* x, int64_t n) {
  const T m = line_max(x, n);
  for (int64_t i = n - 1; i >= 0; --i) {
    if (x[i] == m) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(n - 1);  // unreachable without NaN
}

// ----------------------------------------------------------------------------------------------------------------
// Op entry points.

at::Tensor directional_pool_cpu(const at::Tensor& x, c10::string_view direction) {
  check_map(x, "x");
  const Direction d = parse_direction(direction);
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t NC = xc.size(0) * xc.size(1), H = xc.size(2), W = xc.size(3);
  if (xc.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "mmkp_directional_pool_cpu", [&] {
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, NC, plane_grain(H, W), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> buf(W * kRowGroup);
      for (int64_t p = begin; p < end; ++p) {
        pool_forward_plane(xp + p * H * W, op + p * H * W, H, W, d, false, buf.data());
      }
    });
  });
  return out;
}

at::Tensor directional_pool_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                         c10::string_view direction) {
  check_map(x, "x");
  check_same(grad_out, "grad_out", x, "x");
  const Direction d = parse_direction(direction);
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = grad_out.contiguous();
  at::Tensor gin = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t NC = xc.size(0) * xc.size(1), H = xc.size(2), W = xc.size(3);
  if (xc.numel() == 0) return gin;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "mmkp_directional_pool_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    scalar_t* ip = gin.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, NC, plane_grain(H, W), [&](int64_t begin, int64_t end) {
      Scratch<scalar_t, acc_t> scratch(W);
      for (int64_t p = begin; p < end; ++p) {
        pool_backward_plane<scalar_t, acc_t>(xp + p * H * W, gp + p * H * W, ip + p * H * W, H, W, d, scratch);
      }
    });
  });
  return gin;
}

at::Tensor corner_pool_cpu(const at::Tensor& a, const at::Tensor& b, c10::string_view corner) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  const auto dirs = parse_corner(corner);
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  at::Tensor out = at::empty_like(ac, at::MemoryFormat::Contiguous);
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  if (ac.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ac.scalar_type(), "mmkp_corner_pool_cpu", [&] {
    const scalar_t* ap = ac.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, NC, plane_grain(H, W), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> buf(W * kRowGroup);
      for (int64_t p = begin; p < end; ++p) {
        // vertical pool of a writes the plane, horizontal pool of b adds to it while it is still in cache
        pool_forward_plane(ap + p * H * W, op + p * H * W, H, W, dirs.first, false, buf.data());
        pool_forward_plane(bp + p * H * W, op + p * H * W, H, W, dirs.second, true, buf.data());
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> corner_pool_backward_cpu(const at::Tensor& grad_out, const at::Tensor& a,
                                                            const at::Tensor& b, c10::string_view corner) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  check_same(grad_out, "grad_out", a, "a");
  const auto dirs = parse_corner(corner);
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  const at::Tensor gc = grad_out.contiguous();
  at::Tensor ga = at::empty_like(ac, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::empty_like(bc, at::MemoryFormat::Contiguous);
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  if (ac.numel() == 0) return {ga, gb};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ac.scalar_type(), "mmkp_corner_pool_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* ap = ac.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.const_data_ptr<scalar_t>();
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    scalar_t* gap = ga.mutable_data_ptr<scalar_t>();
    scalar_t* gbp = gb.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, NC, plane_grain(H, W), [&](int64_t begin, int64_t end) {
      Scratch<scalar_t, acc_t> scratch(W);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t o = p * H * W;
        pool_backward_plane<scalar_t, acc_t>(ap + o, gp + o, gap + o, H, W, dirs.first, scratch);
        pool_backward_plane<scalar_t, acc_t>(bp + o, gp + o, gbp + o, H, W, dirs.second, scratch);
      }
    });
  });
  return {ga, gb};
}

at::Tensor center_pool_cpu(const at::Tensor& a, const at::Tensor& b) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  at::Tensor out = at::empty_like(ac, at::MemoryFormat::Contiguous);
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  if (ac.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ac.scalar_type(), "mmkp_center_pool_cpu", [&] {
    const scalar_t* ap = ac.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, NC, plane_grain(H, W), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> colmax(W);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t o = p * H * W;
        column_max(ap + o, H, W, colmax.data());
        const scalar_t* cm = colmax.data();
        for (int64_t h = 0; h < H; ++h) {
          const scalar_t rm = line_max(bp + o + h * W, W);
          scalar_t* orow = op + o + h * W;
          for (int64_t w = 0; w < W; ++w) orow[w] = cm[w] + rm;
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> center_pool_backward_cpu(const at::Tensor& grad_out, const at::Tensor& a,
                                                            const at::Tensor& b) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  check_same(grad_out, "grad_out", a, "a");
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  const at::Tensor gc = grad_out.contiguous();
  at::Tensor ga = at::empty_like(ac, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::empty_like(bc, at::MemoryFormat::Contiguous);
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  if (ac.numel() == 0) return {ga, gb};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ac.scalar_type(), "mmkp_center_pool_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* ap = ac.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.const_data_ptr<scalar_t>();
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    scalar_t* gap = ga.mutable_data_ptr<scalar_t>();
    scalar_t* gbp = gb.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, NC, plane_grain(H, W), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> colmax(W);
      std::vector<int32_t> colidx(W);
      std::vector<acc_t> colsum(W);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t o = p * H * W;
        column_argmax<scalar_t, acc_t>(ap + o, gp + o, H, W, colmax.data(), colidx.data(), colsum.data());
        std::memset(static_cast<void*>(gap + o), 0, sizeof(scalar_t) * H * W);
        for (int64_t w = 0; w < W; ++w) gap[o + colidx[w] * W + w] = static_cast<scalar_t>(colsum[w]);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t r = o + h * W;
          std::memset(static_cast<void*>(gbp + r), 0, sizeof(scalar_t) * W);
          gbp[r + line_argmax_last(bp + r, W)] = static_cast<scalar_t>(line_sum<scalar_t, acc_t>(gp + r, W));
        }
      }
    });
  });
  return {ga, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmkp, CPU, m) {
  m.impl("directional_pool", &directional_pool_cpu);
  m.impl("directional_pool_backward", &directional_pool_backward_cpu);
  m.impl("corner_pool", &corner_pool_cpu);
  m.impl("corner_pool_backward", &corner_pool_backward_cpu);
  m.impl("center_pool", &center_pool_cpu);
  m.impl("center_pool_backward", &center_pool_backward_cpu);
}

}  // namespace mmkp
