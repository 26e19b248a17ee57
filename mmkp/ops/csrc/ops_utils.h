// Host-side helpers shared by the CPU and CUDA implementations of the mmkp ops: argument parsing and checks.
// The Python wrappers (mmkp/ops/*.py) validate arguments first with clear Python errors; these checks guard
// direct calls through torch.ops.mmkp.* as well.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <utility>

namespace mmkp {

enum class Direction { kTop, kBottom, kLeft, kRight };

inline Direction parse_direction(c10::string_view direction) {
  if (direction == "top") return Direction::kTop;
  if (direction == "bottom") return Direction::kBottom;
  if (direction == "left") return Direction::kLeft;
  if (direction == "right") return Direction::kRight;
  TORCH_CHECK_VALUE(false, "mmkp: direction must be one of 'top', 'bottom', 'left', 'right', got '",
                    std::string(direction.data(), direction.size()), "'");
}

// top/bottom pool along H; left/right along W.
inline bool is_vertical(Direction d) { return d == Direction::kTop || d == Direction::kBottom; }

// top/left are suffix maxima (scan from index L-1), bottom/right prefix maxima (scan from index 0).
inline bool is_suffix(Direction d) { return d == Direction::kTop || d == Direction::kLeft; }

// 'top_left' -> (top, left); 'bottom_right' -> (bottom, right): (pool of `a`, pool of `b`).
inline std::pair<Direction, Direction> parse_corner(c10::string_view corner) {
  if (corner == "top_left") return {Direction::kTop, Direction::kLeft};
  if (corner == "bottom_right") return {Direction::kBottom, Direction::kRight};
  TORCH_CHECK_VALUE(false, "mmkp: corner must be 'top_left' or 'bottom_right', got '",
                    std::string(corner.data(), corner.size()), "'");
}

inline void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 4, "mmkp: ", name, " must be a 4-d (N, C, H, W) tensor, got ", t.dim(), " dims");
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), "mmkp: ", name, " must be a floating tensor, got ",
                   t.scalar_type());
}

inline void check_same(const at::Tensor& a, const char* name_a, const at::Tensor& b, const char* name_b) {
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "mmkp: ", name_a, " and ", name_b, " must have the same shape, got ",
                    a.sizes(), " and ", b.sizes());
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "mmkp: ", name_a, " and ", name_b,
                   " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK_VALUE(a.device() == b.device(), "mmkp: ", name_a, " and ", name_b,
                    " must be on the same device, got ", a.device(), " and ", b.device());
}

// images (N, C, H, W) floating; image_inds (K,) int64; windows (K, 3) float32 [y0, x0, side]; out_size >= 1.
inline void check_saccade_args(const at::Tensor& images, const at::Tensor& image_inds, const at::Tensor& windows,
                               int64_t out_size) {
  check_map(images, "images");
  TORCH_CHECK_VALUE(image_inds.dim() == 1 && image_inds.scalar_type() == at::kLong,
                    "mmkp: image_inds must be a 1-d int64 tensor, got ", image_inds.dim(), " dims of ",
                    image_inds.scalar_type());
  TORCH_CHECK_VALUE(windows.dim() == 2 && windows.size(1) == 3 && windows.scalar_type() == at::kFloat,
                    "mmkp: windows must be a (K, 3) float32 tensor [y0, x0, side], got ", windows.sizes(), " of ",
                    windows.scalar_type());
  TORCH_CHECK_VALUE(windows.size(0) == image_inds.size(0), "mmkp: windows and image_inds must have K rows, got ",
                    windows.size(0), " and ", image_inds.size(0));
  TORCH_CHECK_VALUE(images.device() == windows.device() && images.device() == image_inds.device(),
                    "mmkp: images, image_inds and windows must be on the same device");
  TORCH_CHECK_VALUE(out_size >= 1, "mmkp: out_size must be >= 1, got ", out_size);
}

}  // namespace mmkp
