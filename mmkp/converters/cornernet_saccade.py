"""Key rules of the released CornerNet-Saccade checkpoint (whole model: Hourglass-54, corner and attention heads).

``CornerNet_Saccade_500000.pkl`` of princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet_Saccade.py``
(backbone ``core/models/py_utils/modules.py::saccade``, head ``saccade_net``): a bare ``state_dict`` of 828 tensors
(120 BN ``num_batches_tracked`` among them), every key carrying one ``module.`` (the original's ``DummyModule``;
:mod:`mmkp.converters.core` removes it before the rules run).

Target: mmkp ``Hourglass54`` (an mmdet ``HourglassNet`` with the same module names) + ``SaccadeHead`` (a
``CornerPoolHead`` with ``att_modules``). The backbone and the corner head are named exactly as in the CornerNet
(Hourglass-104) checkpoint, so their rules are those of :mod:`mmkp.converters.cornernet` (``HOURGLASS104_RULES``,
``CORNER_HEAD_RULES``); the attention branches keep their names::

    hg.*                                  -> backbone.*                 (the CornerNet rules, 540 tensors)
    {tl,br}_{modules,heats,tags,offs}.*   -> bbox_head.*                (the CornerNet rules, 252 tensors)
    att_modules.{stack}.{scale}.*         -> bbox_head.att_modules.{stack}.{scale}.*   (36 tensors)

Every shape is kept; nothing is dropped.
"""
from typing import List

from .core import Family, Layout, Rule
from .cornernet import CORNER_HEAD_RULES, HOURGLASS104_RULES

SACCADE_ORIGINAL = 'princeton-vl/CornerNet-Lite@6a54505 core/models/CornerNet_Saccade.py'

#: the attention branches (``att_modules.{stack}.{scale}.{0.conv,1}.*``), names unchanged.
ATTENTION_RULES: List[Rule] = [(r'^att_modules\.', 'bbox_head.att_modules.')]

CORNERNET_SACCADE = Layout(
    name='CornerNet-Lite CornerNet_Saccade_500000.pkl',
    original=SACCADE_ORIGINAL,
    rules=HOURGLASS104_RULES + CORNER_HEAD_RULES + ATTENTION_RULES,
    signature=r'^att_modules\.')

CORNERNET_SACCADE_FAMILY = Family(
    name='cornernet_saccade_to_mmkp',
    description='Convert the released CornerNet_Saccade_500000.pkl (princeton-vl/CornerNet-Lite) to an mmkp '
    'checkpoint of the whole model',
    layouts=(CORNERNET_SACCADE, ),
    default_config='configs/cornernet_saccade/cornernet-saccade_hourglass54_released-500k_coco.py')
