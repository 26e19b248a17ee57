"""The op tests need the compiled ops: a missing or broken ``mmkp._ext`` fails them, it is no reason to skip.

``compiled_ext`` is requested by every test that exercises the compiled kernels (``pytestmark`` of their modules).
The tests of the pure-PyTorch fallback (test_ops_fallback.py) simulate a missing extension on purpose and do not
request it, except where they compare the fallback with the compiled kernels.
"""
import pytest
import torch

from mmkp.ops import ext_loader

#: one op per source file of mmkp/ops/csrc whose registration proves that the library was loaded
REGISTERED_OPS = ('directional_pool', 'corner_pool', 'center_pool', 'saccade_crop')


@pytest.fixture(scope='session')
def compiled_ext():
    """The imported ``mmkp._ext``; fails the requesting test with the import error when it cannot be imported."""
    if not ext_loader.ext_loaded():
        pytest.fail(
            f'mmkp._ext could not be imported ({ext_loader._EXT_ERROR!r}): the compiled ops are not built for this '
            'torch. Build them with `make install` (or `python setup.py build_ext --inplace`); the op tests do not '
            'run the pure-PyTorch fallback in their place.',
            pytrace=False)
    missing = [name for name in REGISTERED_OPS if not hasattr(torch.ops.mmkp, name)]
    if missing:
        pytest.fail(f'mmkp._ext was imported but does not register torch.ops.mmkp.{missing}', pytrace=False)
    return ext_loader._EXT
