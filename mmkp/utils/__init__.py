"""Utilities: checkpoint allowlist, data location, distributed set-up on CPUs."""
from .checkpoint import CHECKPOINT_SAFE_GLOBALS, register_checkpoint_safe_globals
from .data import get_data_root
from .dist import destroy_distributed, setup_cpu_distributed

__all__ = [
    'CHECKPOINT_SAFE_GLOBALS', 'register_checkpoint_safe_globals', 'get_data_root', 'setup_cpu_distributed',
    'destroy_distributed'
]
