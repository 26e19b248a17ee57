// CUDA kernels of the directional, fused corner and fused center pools.
//
// Same semantics, tie rule and per-element arithmetic as the CPU kernels (csrc/common/mmkp_common.h:
// pool_takes / pool_step / route_step / argmax_prefers); comparisons and sums run in the op-math type (float for
// half and bfloat16), stored values are elements of the input, hence exact.
//
// * Lines along H (top/bottom, column max): one thread per (plane, w) column, walking the rows in scan order; the
//   threads of a warp read adjacent columns, so every row access is coalesced.
// * Lines along W (left/right, row max): one warp per (plane, h) row, walking it in chunks of 32 elements (one per
//   lane, coalesced); the running maximum is a warp inclusive max-scan carried across chunks, the backward a warp
//   segmented suffix-sum.
// * Backward recomputes the running maxima (pass 1, written into grad_in as scratch) and routes the gradients in
//   reverse scan order (pass 2), like the CPU kernels: no index tensor, no atomics, deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "common/mmkp_common.h"
#include "ops_utils.h"

namespace mmkp {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

inline int64_t blocks_for(int64_t threads) { return (threads + kThreads - 1) / kThreads; }

template <typename A>
__device__ inline A lowest() {
  return -std::numeric_limits<A>::infinity();
}

// ---------------------------------------------------------------------------------------------------------------
// Lines along H: thread per column.

template <typename T>
__global__ void column_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t columns, int64_t H,
                                           int64_t W, bool suffix) {
  using A = at::opmath_type<T>;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= columns) return;
  const int64_t base = (col / W) * H * W + col % W;
  const int64_t first = suffix ? H - 1 : 0;
  const int64_t step = suffix ? -W : W;
  int64_t off = base + first * W;
  A run = static_cast<A>(x[off]);
  out[off] = static_cast<T>(run);
  for (int64_t k = 1; k < H; ++k) {
    off += step;
    run = pool_step(static_cast<A>(x[off]), run);
    out[off] = static_cast<T>(run);
  }
}

template <typename T>
__global__ void column_pool_backward_kernel(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ gin,
                                            int64_t columns, int64_t H, int64_t W, bool suffix) {
  using A = at::opmath_type<T>;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= columns) return;
  const int64_t base = (col / W) * H * W + col % W;
  const int64_t first_off = base + (suffix ? H - 1 : 0) * W;
  const int64_t step = suffix ? -W : W;
  // pass 1: running maxima in scan order, into gin
  int64_t off = first_off;
  A run = static_cast<A>(x[off]);
  gin[off] = static_cast<T>(run);
  for (int64_t k = 1; k < H; ++k) {
    off += step;
    run = pool_step(static_cast<A>(x[off]), run);
    gin[off] = static_cast<T>(run);
  }
  // pass 2: reverse scan order (off is at scan position H-1)
  A acc = A(0);
  for (int64_t k = H - 1; k >= 1; --k, off -= step) {
    const bool rec = pool_takes(static_cast<A>(x[off]), static_cast<A>(gin[off - step]));
    gin[off] = static_cast<T>(route_step<A>(rec, static_cast<A>(g[off]), acc));
  }
  gin[first_off] = static_cast<T>(route_step<A>(true, static_cast<A>(g[first_off]), acc));
}

// ---------------------------------------------------------------------------------------------------------------
// Lines along W: warp per row. Scan position k (0 .. W-1) is element W-1-k of the row for suffix pools, k otherwise.

__device__ inline int64_t row_pos(int64_t k, int64_t W, bool suffix) { return suffix ? W - 1 - k : k; }

// Inclusive running max over the lanes of a warp (lane order = scan order).
template <typename A>
__device__ inline A warp_running_max(A v, int lane) {
#pragma unroll
  for (int off = 1; off < kWarp; off <<= 1) {
    const A other = __shfl_up_sync(kFullMask, v, off);
    if (lane >= off) v = pool_step(v, other);
  }
  return v;
}

template <typename T, bool kAccumulate>
__global__ void row_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows, int64_t W,
                                        bool suffix) {
  using A = at::opmath_type<T>;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (row >= rows) return;  // uniform over the warp
  const T* xr = x + row * W;
  T* orow = out + row * W;
  A carry = lowest<A>();
  for (int64_t chunk = 0; chunk < W; chunk += kWarp) {
    const int64_t k = chunk + lane;
    const bool valid = k < W;
    const int64_t w = row_pos(k, W, suffix);
    A v = valid ? static_cast<A>(xr[w]) : lowest<A>();
    v = warp_running_max(v, lane);
    if (chunk > 0) v = pool_step(v, carry);
    if (valid) {
      if (kAccumulate) {
        orow[w] = static_cast<T>(static_cast<A>(orow[w]) + v);
      } else {
        orow[w] = static_cast<T>(v);
      }
    }
    carry = __shfl_sync(kFullMask, v, kWarp - 1);
  }
}

template <typename T>
__global__ void row_pool_backward_kernel(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ gin,
                                         int64_t rows, int64_t W, bool suffix) {
  using A = at::opmath_type<T>;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (row >= rows) return;  // uniform over the warp
  const T* xr = x + row * W;
  const T* gr = g + row * W;
  T* ir = gin + row * W;
  // pass 1: running maxima in scan order, into gin
  A carry = lowest<A>();
  for (int64_t chunk = 0; chunk < W; chunk += kWarp) {
    const int64_t k = chunk + lane;
    const bool valid = k < W;
    const int64_t w = row_pos(k, W, suffix);
    A v = valid ? static_cast<A>(xr[w]) : lowest<A>();
    v = warp_running_max(v, lane);
    if (chunk > 0) v = pool_step(v, carry);
    if (valid) ir[w] = static_cast<T>(v);
    carry = __shfl_sync(kFullMask, v, kWarp - 1);
  }
  __syncwarp();
  // pass 2: chunks in reverse scan order. Position k is a record when k == 0 or x[k] > running max at k-1; a record
  // takes the sum of g from itself to the position before the next record (route_step, as a segmented suffix sum).
  A flow = A(0);  // gradient flowing into the last position of the chunk from the chunk after it
  const int64_t last_chunk = ((W - 1) / kWarp) * kWarp;
  for (int64_t chunk = last_chunk; chunk >= 0; chunk -= kWarp) {
    const int64_t k = chunk + lane;
    const bool valid = k < W;
    const int64_t w = row_pos(k, W, suffix);
    A gv = A(0);
    bool rec = false;
    if (valid) {
      gv = static_cast<A>(gr[w]);
      rec = (k == 0) || pool_takes(static_cast<A>(xr[w]), static_cast<A>(ir[row_pos(k - 1, W, suffix)]));
    }
    __syncwarp();  // every lane has read its scratch before any lane overwrites it
    const bool rec_next = __shfl_down_sync(kFullMask, rec, 1);
    // segment boundary right after k: next position is a record, or the line ends; the last lane takes the flow
    bool closed;
    A val;
    if (lane == kWarp - 1) {
      closed = true;
      val = gv + flow;
    } else {
      closed = (k + 1 >= W) || rec_next;
      val = gv;
    }
#pragma unroll
    for (int off = 1; off < kWarp; off <<= 1) {
      const A other_val = __shfl_down_sync(kFullMask, val, off);
      const bool other_closed = __shfl_down_sync(kFullMask, closed, off);
      if (lane + off < kWarp && !closed) {
        val += other_val;
        closed = other_closed;
      }
    }
    if (valid) ir[w] = static_cast<T>(rec ? val : A(0));
    const A first_val = __shfl_sync(kFullMask, val, 0);
    const bool first_rec = __shfl_sync(kFullMask, rec, 0);
    flow = first_rec ? A(0) : first_val;
    __syncwarp();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Center pool: full-column / full-row arg-max with ties to the largest index (scan from index L-1, strict >).

template <typename T, bool kBackward>
__global__ void column_argmax_kernel(const T* __restrict__ a, const T* __restrict__ g, T* __restrict__ colmax,
                                     T* __restrict__ grad_a, int64_t columns, int64_t H, int64_t W) {
  using A = at::opmath_type<T>;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= columns) return;
  const int64_t base = (col / W) * H * W + col % W;
  A best = static_cast<A>(a[base + (H - 1) * W]);
  int64_t best_h = H - 1;
  A sum = A(0);
  if (kBackward) sum = static_cast<A>(g[base + (H - 1) * W]);
  for (int64_t h = H - 2; h >= 0; --h) {
    const A v = static_cast<A>(a[base + h * W]);
    if (pool_takes(v, best)) {
      best = v;
      best_h = h;
    }
    if (kBackward) sum += static_cast<A>(g[base + h * W]);
  }
  if (kBackward) {
    grad_a[base + best_h * W] = static_cast<T>(sum);
  } else {
    colmax[col] = static_cast<T>(best);
  }
}

template <typename T, bool kBackward>
__global__ void row_argmax_kernel(const T* __restrict__ b, const T* __restrict__ g, T* __restrict__ rowmax,
                                  T* __restrict__ grad_b, int64_t rows, int64_t W) {
  using A = at::opmath_type<T>;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (row >= rows) return;  // uniform over the warp
  const T* br = b + row * W;
  A best = lowest<A>();
  int64_t best_w = -1;
  A sum = A(0);
  // lane-local scan from the far end (largest index first), strict: the lane's largest index among ties
  for (int64_t w = W - 1 - lane; w >= 0; w -= kWarp) {
    const A v = static_cast<A>(br[w]);
    if (best_w < 0 || pool_takes(v, best)) {
      best = v;
      best_w = w;
    }
    if (kBackward) sum += static_cast<A>(g[row * W + w]);
  }
#pragma unroll
  for (int off = kWarp / 2; off > 0; off >>= 1) {
    const A other = __shfl_down_sync(kFullMask, best, off);
    const int64_t other_w = __shfl_down_sync(kFullMask, best_w, off);
    if (other_w >= 0 && (best_w < 0 || argmax_prefers(other, other_w, best, best_w))) {
      best = other;
      best_w = other_w;
    }
    if (kBackward) sum += __shfl_down_sync(kFullMask, sum, off);
  }
  if (lane == 0) {
    if (kBackward) {
      grad_b[row * W + best_w] = static_cast<T>(sum);
    } else {
      rowmax[row] = static_cast<T>(best);
    }
  }
}

template <typename T>
__global__ void broadcast_add_kernel(const T* __restrict__ colmax, const T* __restrict__ rowmax, T* __restrict__ out,
                                     int64_t total, int64_t H, int64_t W) {
  using A = at::opmath_type<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t w = i % W;
  const int64_t ph = i / W;  // plane * H + h
  const int64_t p = ph / H;
  out[i] = static_cast<T>(static_cast<A>(colmax[p * W + w]) + static_cast<A>(rowmax[ph]));
}

// ---------------------------------------------------------------------------------------------------------------
// Launchers.

template <typename T>
void launch_pool_forward(const T* x, T* out, int64_t NC, int64_t H, int64_t W, Direction d, bool accumulate,
                         cudaStream_t stream) {
  if (is_vertical(d)) {
    TORCH_INTERNAL_ASSERT(!accumulate);
    const int64_t columns = NC * W;
    column_pool_forward_kernel<T><<<blocks_for(columns), kThreads, 0, stream>>>(x, out, columns, H, W, is_suffix(d));
  } else {
    const int64_t rows = NC * H;
    if (accumulate) {
      row_pool_forward_kernel<T, true><<<blocks_for(rows * kWarp), kThreads, 0, stream>>>(x, out, rows, W,
                                                                                            is_suffix(d));
    } else {
      row_pool_forward_kernel<T, false><<<blocks_for(rows * kWarp), kThreads, 0, stream>>>(x, out, rows, W,
                                                                                             is_suffix(d));
    }
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_pool_backward(const T* x, const T* g, T* gin, int64_t NC, int64_t H, int64_t W, Direction d,
                          cudaStream_t stream) {
  if (is_vertical(d)) {
    const int64_t columns = NC * W;
    column_pool_backward_kernel<T><<<blocks_for(columns), kThreads, 0, stream>>>(x, g, gin, columns, H, W,
                                                                                 is_suffix(d));
  } else {
    const int64_t rows = NC * H;
    row_pool_backward_kernel<T><<<blocks_for(rows * kWarp), kThreads, 0, stream>>>(x, g, gin, rows, W,
                                                                                   is_suffix(d));
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define MMKP_DISPATCH_CUDA(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

at::Tensor directional_pool_cuda(const at::Tensor& x, c10::string_view direction) {
  check_map(x, "x");
  const Direction d = parse_direction(direction);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  if (xc.numel() == 0) return out;
  const int64_t NC = xc.size(0) * xc.size(1), H = xc.size(2), W = xc.size(3);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  MMKP_DISPATCH_CUDA(xc.scalar_type(), "mmkp_directional_pool_cuda", [&] {
    launch_pool_forward<scalar_t>(xc.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), NC, H, W, d,
                                  false, stream);
  });
  return out;
}

at::Tensor directional_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                          c10::string_view direction) {
  check_map(x, "x");
  check_same(grad_out, "grad_out", x, "x");
  const Direction d = parse_direction(direction);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = grad_out.contiguous();
  at::Tensor gin = at::empty_like(xc, at::MemoryFormat::Contiguous);
  if (xc.numel() == 0) return gin;
  const int64_t NC = xc.size(0) * xc.size(1), H = xc.size(2), W = xc.size(3);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  MMKP_DISPATCH_CUDA(xc.scalar_type(), "mmkp_directional_pool_bwd_cuda", [&] {
    launch_pool_backward<scalar_t>(xc.const_data_ptr<scalar_t>(), gc.const_data_ptr<scalar_t>(),
                                   gin.mutable_data_ptr<scalar_t>(), NC, H, W, d, stream);
  });
  return gin;
}

at::Tensor corner_pool_cuda(const at::Tensor& a, const at::Tensor& b, c10::string_view corner) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  const auto dirs = parse_corner(corner);
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  at::Tensor out = at::empty_like(ac, at::MemoryFormat::Contiguous);
  if (ac.numel() == 0) return out;
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  MMKP_DISPATCH_CUDA(ac.scalar_type(), "mmkp_corner_pool_cuda", [&] {
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    launch_pool_forward<scalar_t>(ac.const_data_ptr<scalar_t>(), op, NC, H, W, dirs.first, false, stream);
    launch_pool_forward<scalar_t>(bc.const_data_ptr<scalar_t>(), op, NC, H, W, dirs.second, true, stream);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> corner_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& a,
                                                             const at::Tensor& b, c10::string_view corner) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  check_same(grad_out, "grad_out", a, "a");
  const auto dirs = parse_corner(corner);
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  const at::Tensor gc = grad_out.contiguous();
  at::Tensor ga = at::empty_like(ac, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::empty_like(bc, at::MemoryFormat::Contiguous);
  if (ac.numel() == 0) return {ga, gb};
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  MMKP_DISPATCH_CUDA(ac.scalar_type(), "mmkp_corner_pool_bwd_cuda", [&] {
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    launch_pool_backward<scalar_t>(ac.const_data_ptr<scalar_t>(), gp, ga.mutable_data_ptr<scalar_t>(), NC, H, W,
                                   dirs.first, stream);
    launch_pool_backward<scalar_t>(bc.const_data_ptr<scalar_t>(), gp, gb.mutable_data_ptr<scalar_t>(), NC, H, W,
                                   dirs.second, stream);
  });
  return {ga, gb};
}

at::Tensor center_pool_cuda(const at::Tensor& a, const at::Tensor& b) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  at::Tensor out = at::empty_like(ac, at::MemoryFormat::Contiguous);
  if (ac.numel() == 0) return out;
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  at::Tensor colmax = at::empty({NC, W}, ac.options());
  at::Tensor rowmax = at::empty({NC, H}, ac.options());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  MMKP_DISPATCH_CUDA(ac.scalar_type(), "mmkp_center_pool_cuda", [&] {
    const int64_t columns = NC * W, rows = NC * H;
    column_argmax_kernel<scalar_t, false><<<blocks_for(columns), kThreads, 0, stream>>>(
        ac.const_data_ptr<scalar_t>(), nullptr, colmax.mutable_data_ptr<scalar_t>(), nullptr, columns, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    row_argmax_kernel<scalar_t, false><<<blocks_for(rows * kWarp), kThreads, 0, stream>>>(
        bc.const_data_ptr<scalar_t>(), nullptr, rowmax.mutable_data_ptr<scalar_t>(), nullptr, rows, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    broadcast_add_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream>>>(
        colmax.const_data_ptr<scalar_t>(), rowmax.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        out.numel(), H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> center_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& a,
                                                             const at::Tensor& b) {
  check_map(a, "a");
  check_same(a, "a", b, "b");
  check_same(grad_out, "grad_out", a, "a");
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor ac = a.contiguous();
  const at::Tensor bc = b.contiguous();
  const at::Tensor gc = grad_out.contiguous();
  at::Tensor ga = at::zeros_like(ac, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::zeros_like(bc, at::MemoryFormat::Contiguous);
  if (ac.numel() == 0) return {ga, gb};
  const int64_t NC = ac.size(0) * ac.size(1), H = ac.size(2), W = ac.size(3);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  MMKP_DISPATCH_CUDA(ac.scalar_type(), "mmkp_center_pool_bwd_cuda", [&] {
    const int64_t columns = NC * W, rows = NC * H;
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    column_argmax_kernel<scalar_t, true><<<blocks_for(columns), kThreads, 0, stream>>>(
        ac.const_data_ptr<scalar_t>(), gp, nullptr, ga.mutable_data_ptr<scalar_t>(), columns, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    row_argmax_kernel<scalar_t, true><<<blocks_for(rows * kWarp), kThreads, 0, stream>>>(
        bc.const_data_ptr<scalar_t>(), gp, nullptr, gb.mutable_data_ptr<scalar_t>(), rows, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {ga, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmkp, CUDA, m) {
  m.impl("directional_pool", &directional_pool_cuda);
  m.impl("directional_pool_backward", &directional_pool_backward_cuda);
  m.impl("corner_pool", &corner_pool_cuda);
  m.impl("corner_pool_backward", &corner_pool_backward_cuda);
  m.impl("center_pool", &center_pool_cuda);
  m.impl("center_pool_backward", &center_pool_backward_cuda);
}

}  // namespace mmkp
