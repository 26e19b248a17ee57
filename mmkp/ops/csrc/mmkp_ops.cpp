// Schemas of the mmkp custom ops and the `mmkp._ext` Python module.
//
// Kernels: csrc/cpu/*.cpp (TORCH_LIBRARY_IMPL CPU) and csrc/cuda/*.cu (TORCH_LIBRARY_IMPL CUDA, built with
// MMKP_WITH_CUDA). Autograd and fake (meta) kernels are registered from Python (mmkp/ops/pool.py,
// mmkp/ops/saccade_crop.py) with torch.library.register_autograd / register_fake.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(mmkp, m) {
  // Directional max pool of a (N, C, H, W) map: 'top' | 'bottom' | 'left' | 'right'.
  m.def("directional_pool(Tensor x, str direction) -> Tensor");
  m.def("directional_pool_backward(Tensor grad_out, Tensor x, str direction) -> Tensor");
  // Fused corner pool: 'top_left' = top(a) + left(b); 'bottom_right' = bottom(a) + right(b).
  m.def("corner_pool(Tensor a, Tensor b, str corner) -> Tensor");
  m.def("corner_pool_backward(Tensor grad_out, Tensor a, Tensor b, str corner) -> (Tensor, Tensor)");
  // Fused center pool: column max of a (broadcast along H) + row max of b (broadcast along W).
  m.def("center_pool(Tensor a, Tensor b) -> Tensor");
  m.def("center_pool_backward(Tensor grad_out, Tensor a, Tensor b) -> (Tensor, Tensor)");
  // Batched bilinear crops: windows (K, 3) float32 [y0, x0, side] in original pixels, image_inds (K,) int64.
  m.def("saccade_crop(Tensor images, Tensor image_inds, Tensor windows, int out_size) -> Tensor");
  m.def("saccade_crop_backward(Tensor grad_out, Tensor image_inds, Tensor windows, int[] image_shape) -> Tensor");
}

// `import mmkp._ext` loads this library, which registers the ops above (static initialisers); the module itself
// only says whether the CUDA kernels were compiled in.
extern "C" PyMODINIT_FUNC PyInit__ext(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_ext",
                                          "mmkp compiled keypoint ops (registered as torch.ops.mmkp.*)", -1,
                                          nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef MMKP_WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
