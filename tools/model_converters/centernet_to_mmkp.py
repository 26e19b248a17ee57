"""Convert a released CenterNet (Objects as Points) checkpoint to an mmkp checkpoint of the whole model.

Reads ``ctdet_coco_hg.pth`` (Hourglass-104), ``ctdet_coco_dla_2x.pth`` (DLA-34) or ``ctdet_coco_resdcn18.pth``
(ResNet-18-DCN) of xingyizhou/CenterNet@4c50fd3 (``readme/MODEL_ZOO.md``), told apart by their key names. The rules
and checks are :mod:`mmkp.converters.centernet` and :mod:`mmkp.converters.core`: every key is mapped onto the model of
the config (default: the file's released-model config, ``configs/centernet/centernet_*_released_coco.py``), with
equal shapes, the ResNet-DCN neck's deformable-convolution biases folded into the running means of the BNs after them,
or nothing is written. Usage::

    python tools/model_converters/centernet_to_mmkp.py ctdet_coco_dla_2x.pth centernet_dla_2x.pth [--config CFG]
    python tools/test.py configs/centernet/centernet_dla34-dcnv2-2x_released_coco.py centernet_dla_2x.pth [--tta]
"""
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.converters.centernet import CENTERNET_FAMILY  # noqa: E402
from mmkp.converters.core import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(CENTERNET_FAMILY, REPO))
