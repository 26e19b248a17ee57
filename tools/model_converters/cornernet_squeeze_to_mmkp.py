"""Convert the released CornerNet-Squeeze checkpoint to an mmkp checkpoint of the whole model.

Reads ``CornerNet_Squeeze_500000.pkl`` of princeton-vl/CornerNet-Lite@6a54505 (``core/models/CornerNet_Squeeze.py``).
The rules and checks are :mod:`mmkp.converters.cornernet` and :mod:`mmkp.converters.core`: every key is mapped onto
the model of the config (default:
``configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze_released-500k_coco.py``), with equal shapes, or
nothing is written. Usage::

    python tools/model_converters/cornernet_squeeze_to_mmkp.py CornerNet_Squeeze_500000.pkl squeeze_released.pth
    python tools/test.py configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze_released-500k_coco.py \\
        squeeze_released.pth
"""
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.converters.cornernet import CORNERNET_SQUEEZE_FAMILY  # noqa: E402
from mmkp.converters.core import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(CORNERNET_SQUEEZE_FAMILY, REPO))
