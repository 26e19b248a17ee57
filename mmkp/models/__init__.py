"""Models: backbones, necks, layers, heads, losses, assigners and decoders, all registered into mmdet."""
from . import backbones, dense_heads, detectors, layers, losses, necks, task_modules, utils  # noqa: F401
