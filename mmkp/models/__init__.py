"""Models: backbones, necks, layers, heads, losses, assigners and decoders, all registered into mmdet."""
from . import backbones, dense_heads, detectors, layers, losses, necks, task_modules, utils  # noqa: F401
from . import test_time_augs  # noqa: F401,E402
