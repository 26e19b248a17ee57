"""Convert a released FCOS checkpoint to an mmkp checkpoint of the whole model.

Reads ``FCOS_R_50_FPN_1x.pth`` or ``FCOS_imprv_R_50_FPN_1x.pth`` of tianzhi0549/FCOS@a773f12 (``README.md``). The
rules and checks are :mod:`mmkp.converters.fcos` and :mod:`mmkp.converters.core`: every key is mapped onto the model
of the config, with equal shapes (the heads' ``Scale`` tensors reshaped from (1,) to 0-dim), the BN
``num_batches_tracked`` buffers set to 0, or nothing is written. The two files have the same keys, so without
``--config`` the file name picks the released-model config (``imprv`` in it:
``configs/fcos/fcos-imprv_r50-caffe_fpn_gn-head_released-1x_coco.py``, else ``FCOS_R_50_FPN``:
``configs/fcos/fcos_r50-caffe_fpn_gn-head_released-1x_coco.py``; another name is refused). Usage::

    python tools/model_converters/fcos_to_mmkp.py FCOS_imprv_R_50_FPN_1x.pth fcos_imprv_r50_1x.pth [--config CFG]
    python tools/test.py configs/fcos/fcos-imprv_r50-caffe_fpn_gn-head_released-1x_coco.py fcos_imprv_r50_1x.pth
"""
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)  # run from a checkout without install

from mmkp.converters.core import main  # noqa: E402
from mmkp.converters.fcos import FCOS_FAMILY  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(FCOS_FAMILY, REPO))
