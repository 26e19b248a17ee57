"""mmkp: keypoint-based, anchor-free object detection for MMDetection 3.x.

Importing ``mmkp`` (what ``custom_imports=dict(imports=['mmkp'])`` does)

1. checks the versions of mmcv, mmengine and mmdet;
2. allowlists the mmengine and numpy types that mmengine checkpoints hold, so that they load on torch >= 2.6 with
   ``weights_only`` kept on (:mod:`mmkp.utils.checkpoint`);
3. registers every mmkp module into mmdet's registries (:mod:`mmkp.registry`).
"""
import mmcv
import mmdet
import mmengine
from mmengine.utils import digit_version

from .version import __version__, version_info

MMCV_MIN, MMCV_MAX = '2.0.0rc4', '2.2.0'
MMENGINE_MIN, MMENGINE_MAX = '0.7.1', '1.0.0'
MMDET_MIN, MMDET_MAX = '3.3.0', '3.4.0'


def _check_version(name: str, version: str, low: str, high: str) -> None:
    if not digit_version(low) <= digit_version(version) < digit_version(high):
        raise ImportError(f'{name}=={version} is installed but mmkp needs {low} <= {name} < {high}. '
                          'Run `make test` (or see README.md, "Install") to build a matching environment.')


_check_version('mmcv', mmcv.__version__, MMCV_MIN, MMCV_MAX)
_check_version('mmengine', mmengine.__version__, MMENGINE_MIN, MMENGINE_MAX)
_check_version('mmdet', mmdet.__version__, MMDET_MIN, MMDET_MAX)

from .utils.checkpoint import register_checkpoint_safe_globals  # noqa: E402

register_checkpoint_safe_globals()

from . import datasets, engine, evaluation, models, ops  # noqa: E402,F401

__all__ = ['__version__', 'version_info']
