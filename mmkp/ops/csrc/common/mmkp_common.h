// Per-element arithmetic of the mmkp keypoint ops, shared by the C++ CPU loops and the CUDA kernels.
//
// Everything here is a `MMKP_HOST_DEVICE` inline function: nvcc compiles it for the device, the host compiler for
// the CPU loops, so the CPU tests exercise the very arithmetic (comparisons, tie rule, bilinear weights, zero
// padding) that the GPU runs. No ATen, no allocation, no host-only calls in this file.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MMKP_HOST_DEVICE __host__ __device__
#else
#define MMKP_HOST_DEVICE
#endif

namespace mmkp {

// ---------------------------------------------------------------------------------------------------------------
// Directional (corner) pooling: CornerNet-Lite core/models/py_utils/_cpools/src/{top,bottom,left,right}_pool.cpp,
// Duankaiwen/CenterNet models/py_utils/_cpools/src/*.cpp.
//
// A pool runs along one axis of a (N, C, H, W) map. Its *scan order* starts at the far end of the window an output
// looks into: top/left (suffix max, out[i] = max_{j >= i} x[j]) scan from index L-1 down to 0, bottom/right
// (prefix max, out[i] = max_{j <= i} x[j]) from 0 up to L-1. In scan order the output is the running maximum.
//
// Tie rule (the original backward): the running maximum is replaced only by a *strictly* greater element, so among
// equal values the first one met in the scan -- the one farthest from the output position -- is the argmax.
// ---------------------------------------------------------------------------------------------------------------

// True when `candidate` replaces `running` as the maximum (strict: ties keep the element met first).
template <typename T>
MMKP_HOST_DEVICE inline bool pool_takes(T candidate, T running) {
  return candidate > running;
}

// One step of the running maximum in scan order.
template <typename T>
MMKP_HOST_DEVICE inline T pool_step(T candidate, T running) {
  return pool_takes(candidate, running) ? candidate : running;
}

// Backward, one step in *reverse* scan order.
//
// Position k is a "record" when it is the first of the scan (k == 0) or x[k] strictly exceeds the running max of
// the positions scanned before it. The output at scan position k routes its gradient to the last record at or
// before k, so a record collects the gradients of the outputs from itself up to (excluding) the next record.
// Walking in reverse scan order: acc += g[k]; a record takes acc and restarts it; other positions get 0.
template <typename A>
MMKP_HOST_DEVICE inline A route_step(bool is_record, A grad, A& acc) {
  const A sum = acc + grad;
  acc = is_record ? A(0) : sum;
  return is_record ? sum : A(0);
}

// Merge two (value, index) candidates of a full-line arg-max whose tie rule is "largest index wins" (center pooling:
// bottom(top(x)) routes every gradient of a column to the argmax of the whole column met first when scanning from
// index H-1, i.e. the largest index among equal maxima; likewise right(left(x)) along a row).
template <typename T>
MMKP_HOST_DEVICE inline bool argmax_prefers(T value, int64_t index, T best_value, int64_t best_index) {
  return value > best_value || (value == best_value && index > best_index);
}

// ---------------------------------------------------------------------------------------------------------------
// Saccade crop (CornerNet-Lite core/test/cornernet_saccade.py::crop_image_gpu / prepare_images).
//
// A crop window starts at `start` (original-image pixels, top or left edge) and spans `side` original pixels, which
// are resampled to `out_size` crop pixels. Pixel centres follow the half-pixel convention of
// F.interpolate(mode='bilinear', align_corners=False): crop pixel o covers [o, o+1) in crop units, its centre
// o + 0.5 maps to the original-image coordinate u = start + (o + 0.5) * side / out_size.
// ---------------------------------------------------------------------------------------------------------------

// Interpolation taps of one axis: two source indices and their weights; `valid` is false outside the image.
struct BilinearTap {
  int64_t i0;
  int64_t i1;
  float w0;
  float w1;
  bool valid;
};

// Taps for crop pixel `o` along an axis of `size` image pixels. Outside the image ([0, size) in continuous
// coordinates) the crop is zero (valid == false). Inside, the neighbours are clamped to the part of the window that
// lies in the image, pixels [max(start, 0), min(start + side, size) - 1], the way F.interpolate clamps at the edges
// of the crop the original resizes; so a window wholly inside the image reproduces
// F.interpolate(image[..., start:start+side], out_size, mode='bilinear', align_corners=False).
MMKP_HOST_DEVICE inline BilinearTap saccade_tap(int64_t o, float start, float side, int64_t out_size, int64_t size) {
  BilinearTap tap;
  const float u = start + (static_cast<float>(o) + 0.5f) * (side / static_cast<float>(out_size));
  tap.valid = (u >= 0.f) && (u < static_cast<float>(size));
  const float lo = start > 0.f ? start : 0.f;
  const float end = start + side < static_cast<float>(size) ? start + side : static_cast<float>(size);
  int64_t hi = static_cast<int64_t>(floorf(end - 1.f));  // last pixel of the window in the image
  hi = hi > size - 1 ? size - 1 : hi;
  hi = hi < 0 ? 0 : hi;
  float src = u - 0.5f;
  src = src < lo ? lo : src;
  int64_t i0 = static_cast<int64_t>(floorf(src));
  i0 = i0 > hi ? hi : i0;
  i0 = i0 < 0 ? 0 : i0;
  tap.i0 = i0;
  tap.i1 = i0 + 1 < hi ? i0 + 1 : hi;
  tap.w1 = src - static_cast<float>(i0);
  tap.w0 = 1.f - tap.w1;
  if (!tap.valid) {
    tap.i0 = 0;
    tap.i1 = 0;
    tap.w0 = 0.f;
    tap.w1 = 0.f;
  }
  return tap;
}

// One linear interpolation between two taps: w0 * v0 + w1 * v1.
template <typename A>
MMKP_HOST_DEVICE inline A lerp_taps(A w0, A v0, A w1, A v1) {
  return w0 * v0 + w1 * v1;
}

// Bilinear blend in F.interpolate's order: wy0 * (wx0 * v00 + wx1 * v01) + wy1 * (wx0 * v10 + wx1 * v11), i.e.
// along x first, then along y (the CPU kernel runs the two lerp_taps passes separately, in the same order).
template <typename A>
MMKP_HOST_DEVICE inline A bilinear_blend(const BilinearTap& ty, const BilinearTap& tx, A v00, A v01, A v10, A v11) {
  const A wx0 = static_cast<A>(tx.w0), wx1 = static_cast<A>(tx.w1);
  return lerp_taps(static_cast<A>(ty.w0), lerp_taps(wx0, v00, wx1, v01), static_cast<A>(ty.w1),
                   lerp_taps(wx0, v10, wx1, v11));
}

// The four backward weights (d out / d v00, v01, v10, v11) of `bilinear_blend`.
template <typename A>
MMKP_HOST_DEVICE inline void bilinear_grad_weights(const BilinearTap& ty, const BilinearTap& tx, A* w) {
  const A wy0 = static_cast<A>(ty.w0), wy1 = static_cast<A>(ty.w1);
  const A wx0 = static_cast<A>(tx.w0), wx1 = static_cast<A>(tx.w1);
  w[0] = wy0 * wx0;
  w[1] = wy0 * wx1;
  w[2] = wy1 * wx0;
  w[3] = wy1 * wx1;
}

}  // namespace mmkp
