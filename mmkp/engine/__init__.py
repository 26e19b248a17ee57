"""Runner-side pieces: model wrappers and hooks."""
from .hooks import AtomicCheckpointHook, FiniteLossHook
from .model_wrappers import CPUDistributedDataParallel

__all__ = ['CPUDistributedDataParallel']
__all__ += ['AtomicCheckpointHook', 'FiniteLossHook']
