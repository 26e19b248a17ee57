"""Convert the released CornerNet-Saccade checkpoint to an mmkp checkpoint of the whole model.

Reads ``CornerNet_Saccade_500000.pkl`` of princeton-vl/CornerNet-Lite@6a54505 (``core/models/CornerNet_Saccade.py``).
The rules and checks are :mod:`mmkp.converters.cornernet_saccade` and :mod:`mmkp.converters.core`: every key is
mapped onto the model of the config (default:
``configs/cornernet_saccade/cornernet-saccade_hourglass54_released-500k_coco.py``), with equal shapes, or nothing is
written. Usage::

    python tools/model_converters/cornernet_saccade_to_mmkp.py CornerNet_Saccade_500000.pkl saccade.pth [--config CFG]
"""
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.converters.core import main  # noqa: E402
from mmkp.converters.cornernet_saccade import CORNERNET_SACCADE_FAMILY  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(CORNERNET_SACCADE_FAMILY, REPO))
