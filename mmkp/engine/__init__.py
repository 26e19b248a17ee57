"""Runner-side pieces: model wrappers and hooks."""
from .model_wrappers import CPUDistributedDataParallel

__all__ = ['CPUDistributedDataParallel']
