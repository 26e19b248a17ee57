"""Convert a released CornerNet (Hourglass-104) checkpoint to an mmkp checkpoint of the whole model.

Reads either ``CornerNet_500000.pkl``: princeton-vl/CornerNet-Lite@6a54505 (``core/models/CornerNet.py``) or
princeton-vl/CornerNet@e5c39a3 (``models/CornerNet.py``), told apart by their key names. The rules and checks are
:mod:`mmkp.converters.cornernet` and :mod:`mmkp.converters.core`: every key is mapped onto the model of the config
(default: ``configs/cornernet/cornernet_hourglass104_released-500k_coco.py``), with equal shapes, or nothing is
written. Usage::

    python tools/model_converters/cornernet_to_mmkp.py CornerNet_500000.pkl cornernet_released.pth [--config CFG]
    python tools/test.py configs/cornernet/cornernet_hourglass104_released-500k_coco.py cornernet_released.pth --tta
"""
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.converters.cornernet import CORNERNET_FAMILY  # noqa: E402
from mmkp.converters.core import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(CORNERNET_FAMILY, REPO))
