// CUDA kernels of the batched saccade crop (see csrc/common/mmkp_common.h::saccade_tap and
// mmkp/ops/saccade_crop.py for the convention). One thread per crop pixel and channel; the backward scatter-adds
// with atomics into an op-math-type buffer (float for half / bfloat16 / float, double for double), so its summation
// order -- unlike the CPU kernel's -- is not deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/mmkp_common.h"
#include "ops_utils.h"

namespace mmkp {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void saccade_crop_forward_kernel(const T* __restrict__ images, const int64_t* __restrict__ inds,
                                            const float* __restrict__ windows, T* __restrict__ out, int64_t total,
                                            int64_t N, int64_t C, int64_t H, int64_t W, int64_t out_size) {
  using A = at::opmath_type<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t ox = i % out_size;
  const int64_t oy = (i / out_size) % out_size;
  const int64_t kc = i / (out_size * out_size);
  const int64_t c = kc % C, k = kc / C;
  const float side = windows[k * 3 + 2];
  const BilinearTap ty = saccade_tap(oy, windows[k * 3 + 0], side, out_size, H);
  const BilinearTap tx = saccade_tap(ox, windows[k * 3 + 1], side, out_size, W);
  if (!(ty.valid && tx.valid)) {
    out[i] = static_cast<T>(0);
    return;
  }
  CUDA_KERNEL_ASSERT(inds[k] >= 0 && inds[k] < N);
  const T* plane = images + (inds[k] * C + c) * H * W;
  const T* r0 = plane + ty.i0 * W;
  const T* r1 = plane + ty.i1 * W;
  out[i] = static_cast<T>(bilinear_blend<A>(ty, tx, static_cast<A>(r0[tx.i0]), static_cast<A>(r0[tx.i1]),
                                            static_cast<A>(r1[tx.i0]), static_cast<A>(r1[tx.i1])));
}

template <typename T>
__global__ void saccade_crop_backward_kernel(const T* __restrict__ grad_out, const int64_t* __restrict__ inds,
                                             const float* __restrict__ windows,
                                             at::opmath_type<T>* __restrict__ grad_images, int64_t total, int64_t N,
                                             int64_t C, int64_t H, int64_t W, int64_t out_size) {
  using A = at::opmath_type<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t ox = i % out_size;
  const int64_t oy = (i / out_size) % out_size;
  const int64_t kc = i / (out_size * out_size);
  const int64_t c = kc % C, k = kc / C;
  const float side = windows[k * 3 + 2];
  const BilinearTap ty = saccade_tap(oy, windows[k * 3 + 0], side, out_size, H);
  const BilinearTap tx = saccade_tap(ox, windows[k * 3 + 1], side, out_size, W);
  if (!(ty.valid && tx.valid)) return;
  CUDA_KERNEL_ASSERT(inds[k] >= 0 && inds[k] < N);
  A w[4];
  bilinear_grad_weights<A>(ty, tx, w);
  const A g = static_cast<A>(grad_out[i]);
  A* plane = grad_images + (inds[k] * C + c) * H * W;
  gpuAtomicAdd(plane + ty.i0 * W + tx.i0, w[0] * g);
  gpuAtomicAdd(plane + ty.i0 * W + tx.i1, w[1] * g);
  gpuAtomicAdd(plane + ty.i1 * W + tx.i0, w[2] * g);
  gpuAtomicAdd(plane + ty.i1 * W + tx.i1, w[3] * g);
}

at::Tensor saccade_crop_cuda(const at::Tensor& images, const at::Tensor& image_inds, const at::Tensor& windows,
                             int64_t out_size) {
  check_saccade_args(images, image_inds, windows, out_size);
  const c10::cuda::CUDAGuard guard(images.device());
  const at::Tensor img = images.contiguous();
  const at::Tensor inds = image_inds.contiguous();
  const at::Tensor win = windows.contiguous();
  const int64_t N = img.size(0), C = img.size(1), H = img.size(2), W = img.size(3), K = win.size(0);
  at::Tensor out = at::empty({K, C, out_size, out_size}, img.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  TORCH_CHECK_VALUE(H > 0 && W > 0, "mmkp: images must have H, W >= 1 to be cropped");
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, img.scalar_type(), "mmkp_saccade_crop_cuda", [&] {
    saccade_crop_forward_kernel<scalar_t><<<(total + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        img.const_data_ptr<scalar_t>(), inds.const_data_ptr<int64_t>(), win.const_data_ptr<float>(),
        out.mutable_data_ptr<scalar_t>(), total, N, C, H, W, out_size);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor saccade_crop_backward_cuda(const at::Tensor& grad_out, const at::Tensor& image_inds,
                                      const at::Tensor& windows, at::IntArrayRef image_shape) {
  TORCH_CHECK_VALUE(image_shape.size() == 4, "mmkp: image_shape must have 4 entries (N, C, H, W)");
  TORCH_CHECK_VALUE(windows.dim() == 2 && windows.size(1) == 3 && windows.scalar_type() == at::kFloat,
                    "mmkp: windows must be a (K, 3) float32 tensor, got ", windows.sizes());
  TORCH_CHECK_VALUE(image_inds.dim() == 1 && image_inds.size(0) == windows.size(0) &&
                        image_inds.scalar_type() == at::kLong,
                    "mmkp: image_inds must be a (K,) int64 tensor");
  const int64_t N = image_shape[0], C = image_shape[1], H = image_shape[2], W = image_shape[3];
  const int64_t K = windows.size(0);
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == K && grad_out.size(1) == C &&
                        grad_out.size(2) == grad_out.size(3),
                    "mmkp: grad_out must be (K, C, out_size, out_size), got ", grad_out.sizes());
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const int64_t out_size = grad_out.size(2);
  const at::Tensor go = grad_out.contiguous();
  const at::Tensor inds = image_inds.contiguous();
  const at::Tensor win = windows.contiguous();
  at::Tensor gacc = at::zeros({N, C, H, W}, go.options().dtype(at::toOpMathType(go.scalar_type())));
  const int64_t total = go.numel();
  if (total == 0 || gacc.numel() == 0) return gacc.to(go.scalar_type());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "mmkp_saccade_crop_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    saccade_crop_backward_kernel<scalar_t><<<(total + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        go.const_data_ptr<scalar_t>(), inds.const_data_ptr<int64_t>(), win.const_data_ptr<float>(),
        gacc.mutable_data_ptr<acc_t>(), total, N, C, H, W, out_size);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gacc.to(go.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(mmkp, CUDA, m) {
  m.impl("saccade_crop", &saccade_crop_cuda);
  m.impl("saccade_crop_backward", &saccade_crop_backward_cuda);
}

}  // namespace mmkp
