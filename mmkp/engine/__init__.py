"""Runner-side pieces: model wrappers and hooks."""
from .hooks import AtomicCheckpointHook, FiniteLossHook, RandomStateHook
from .model_wrappers import CPUDistributedDataParallel

__all__ = ['CPUDistributedDataParallel']
__all__ += ['AtomicCheckpointHook', 'FiniteLossHook', 'RandomStateHook']
