"""Convert a released CenterNet keypoint-triplet checkpoint to an mmkp checkpoint of the whole model.

Reads ``CenterNet-104_480000.pkl`` (Duankaiwen/CenterNet@3ad3a10 ``models/CenterNet-104.py``) or
``CenterNet-52_480000.pkl`` (``models/CenterNet-52.py``), told apart by their number of hourglass stacks. The rules
and checks are :mod:`mmkp.converters.centernet_triplet` and :mod:`mmkp.converters.core`: every key is mapped onto the
model of the config, with equal shapes, or nothing is written. Without ``--config`` the file's released config is
used (``configs/centernet_triplet/centernet-triplet_hourglass{104,52}_released-480k_coco.py``). Usage::

    python tools/model_converters/centernet_triplet_to_mmkp.py CenterNet-104_480000.pkl centernet104.pth
    python tools/test.py configs/centernet_triplet/centernet-triplet_hourglass104_released-480k_coco.py \\
        centernet104.pth --tta
"""
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.converters.centernet_triplet import CENTERNET_TRIPLET_FAMILY  # noqa: E402
from mmkp.converters.core import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(CENTERNET_TRIPLET_FAMILY, REPO))
