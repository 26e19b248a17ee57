"""ONNX export of mmkp detectors (``tools/deployment/pytorch2onnx.py``) and the post-processing of its graphs.

Not imported by :mod:`mmkp`: it needs ``onnx`` (export) and is used only when deploying.
"""
from .export import FAMILIES, build_graph, detect_family, export_mode, export_onnx, output_names, run_graph
from .onnx_ops import onnx_center_pool, onnx_corner_pool, onnx_directional_pool, onnx_pools
from .postprocess import ONNXPostProcessor, postprocess

__all__ = [
    'FAMILIES', 'build_graph', 'detect_family', 'export_mode', 'export_onnx', 'output_names', 'run_graph',
    'onnx_center_pool', 'onnx_corner_pool', 'onnx_directional_pool', 'onnx_pools', 'ONNXPostProcessor',
    'postprocess'
]
