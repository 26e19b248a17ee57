"""DDP wrapper that also works for a model on the CPU."""
from mmengine.model import MMDistributedDataParallel

from mmkp.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that leaves out ``device_ids`` when the module lives on the CPU.

    mmengine's Runner always passes ``device_ids=[LOCAL_RANK]``; torch's DDP requires ``device_ids=None`` for CPU
    modules. On a GPU the wrapper behaves exactly as its parent. Selected automatically by
    :func:`mmkp.utils.setup_cpu_distributed` (``tools/train.py``, ``tools/test.py``) on machines without CUDA.

    Args:
        module (nn.Module): the model.
        **kwargs: the arguments of ``MMDistributedDataParallel`` (``device_ids`` dropped on the CPU).
    """

    def __init__(self, module, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu:
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        super().__init__(module=module, **kwargs)
