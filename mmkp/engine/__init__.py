"""Runner-side pieces: model wrappers and hooks."""
from .hooks import AtomicCheckpointHook, FiniteLossHook, RandomStateHook, SkippedImagesHook
from .model_wrappers import CPUDistributedDataParallel

__all__ = ['CPUDistributedDataParallel']
__all__ += ['AtomicCheckpointHook', 'FiniteLossHook', 'RandomStateHook', 'SkippedImagesHook']
