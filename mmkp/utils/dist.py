"""Distributed training on CPUs with mmengine 0.10.7.

mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` (fails on a CPU build of torch) and its Runner
passes ``device_ids=[LOCAL_RANK]`` to DDP, which torch refuses for a CPU module (ARCHITECTURE.md section 1). The
Runner skips its own process-group set-up when a group already exists, so on a machine without CUDA the tools call
:func:`setup_cpu_distributed` first and wrap the model with ``CPUDistributedDataParallel``.
"""
import os

import torch
import torch.distributed as dist


def setup_cpu_distributed(launcher: str, cfg=None) -> bool:
    """Start a gloo process group for a CPU run launched by ``torchrun`` / ``torch.distributed.launch``.

    Does nothing (returns False) unless ``launcher == 'pytorch'`` and CUDA is unavailable. Otherwise reads
    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` from the environment (set by the launcher), calls
    ``init_process_group('gloo')`` and, when ``cfg`` is given, makes the Runner wrap the model with
    ``CPUDistributedDataParallel`` (keeping the other keys of ``cfg.model_wrapper_cfg``).

    Args:
        launcher (str): the ``--launcher`` argument of the tool.
        cfg (mmengine.Config, optional): the config to adjust in place.

    Returns:
        bool: whether a CPU process group is in use.

    Raises:
        RuntimeError: when the launcher environment variables are missing.
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the environment variables {missing} set by torchrun or '
                           'torch.distributed.launch; use tools/dist_train.sh or tools/dist_test.sh.')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    if cfg is not None:
        wrapper = cfg.get('model_wrapper_cfg', None)
        if wrapper is None:  # what the Runner builds by default, minus device_ids
            wrapper = dict(broadcast_buffers=False, find_unused_parameters=cfg.get('find_unused_parameters', False))
        wrapper = dict(wrapper)
        if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
            # the Runner looks the type up in mmengine's root registry: name mmdet's scope, where mmkp registers
            wrapper['type'] = 'mmdet.CPUDistributedDataParallel'
        cfg.model_wrapper_cfg = wrapper
        env_cfg = cfg.get('env_cfg', {})
        env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
        cfg.env_cfg = env_cfg
    return True


def destroy_distributed() -> bool:
    """Destroy the default process group, if any, at the end of a tool's successful run.

    Without it a gloo run can end in ``terminate called without an active exception`` (SIGABRT) after the last
    epoch: gloo's worker threads still hold work objects when the interpreter shuts down (pytorch/pytorch PR 179291
    describes the crash; torch's distributed docs ask every process to call ``destroy_process_group`` near the end
    of its main). mmengine's Runner does not call it. Call it only after a run that ended normally: on an exception
    another rank may be inside a collective and the call could wait for it (pytorch/torchtitan PR 1342).

    Returns:
        bool: whether a process group was destroyed.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True
