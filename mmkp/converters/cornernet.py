"""Key rules of the released CornerNet and CornerNet-Squeeze checkpoints (whole model: backbone and head).

Three released files, each a bare ``state_dict`` whose keys carry one ``module.`` (the originals' ``DummyModule``
wrapper; :mod:`mmkp.converters.core` removes it before the rules run):

* ``CornerNet_500000.pkl`` of princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet.py`` (backbone
  ``core/models/py_utils/modules.py::hg``, corner pooling ``core/models/py_utils/utils.py::corner_pool``): 1128
  tensors, layout :data:`CORNERNET_LITE`;
* ``CornerNet_500000.pkl`` of princeton-vl/CornerNet@e5c39a3 ``models/CornerNet.py`` (``models/py_utils/kp.py``):
  the same model and shapes under other names (``pre``, ``kps``, ``cnvs``, ``inters``, ``inters_``, ``cnvs_``,
  ``{tl,br}_cnvs``, ``{tl,br}_regrs``), layout :data:`CORNERNET_ORIGINAL`; trained under PyTorch 0.4.0, it most
  likely lacks the 180 BN ``num_batches_tracked`` buffers (filled with 0, see :mod:`mmkp.converters.core`);
* ``CornerNet_Squeeze_500000.pkl`` of princeton-vl/CornerNet-Lite@6a54505 ``core/models/CornerNet_Squeeze.py``: 990
  tensors, layout :data:`CORNERNET_SQUEEZE`.

CornerNet (Hourglass-104) -> mmdet ``HourglassNet`` + mmkp ``CornerPoolHead`` (CornerNet-Lite names; ``{i}`` a
stack, ``*`` the rest of the key, unchanged)::

    hg.pre.0.*                         -> backbone.stem.0.*                  (ConvModule: conv, bn)
    hg.pre.1.skip.*                    -> backbone.stem.1.0.downsample.*     (ResLayer of one BasicBlock)
    hg.pre.1.*                         -> backbone.stem.1.0.*
    hg.hgs.{i}.<path>.skip.*           -> backbone.hourglass_modules.{i}.<path>.downsample.*
    hg.hgs.{i}.*                       -> backbone.hourglass_modules.{i}.*
    hg.cnvs.{i}.*                      -> backbone.out_convs.{i}.*
    hg.inters_.{i}.{0,1}.*             -> backbone.conv1x1s.{i}.{conv,bn}.*   (applied to the hourglass input)
    hg.cnvs_.{i}.{0,1}.*               -> backbone.remap_convs.{i}.{conv,bn}.* (applied to the stack's feature)
    hg.inters.{i}.*                    -> backbone.inters.{i}.*
    {tl,br}_modules.{i}.p_conv1.*      -> bbox_head.{tl,br}_modules.{i}.p_conv1.conv.*
    {tl,br}_modules.{i}.p_bn1.*        -> bbox_head.{tl,br}_modules.{i}.p_conv1.bn.*
    {tl,br}_modules.{i}.conv1.*        -> bbox_head.{tl,br}_modules.{i}.conv1.conv.*
    {tl,br}_modules.{i}.bn1.*          -> bbox_head.{tl,br}_modules.{i}.conv1.bn.*
    {tl,br}_modules.{i}.*              -> bbox_head.{tl,br}_modules.{i}.*    (p1_conv1, p2_conv1, conv2)
    {tl,br}_{heats,tags,offs}.{i}.*    -> bbox_head.{tl,br}_{heats,tags,offs}.{i}.*  ({0.conv,1}.{weight,bias})

The corner-pooling renames are ``CornerPoolModule.ORIGINAL_PREFIX_MAP`` (:mod:`mmkp.models.layers.pool_modules`),
read from there. The original CornerNet repository's names are first written in the Lite names
(:data:`ORIGINAL_TO_LITE`). CornerNet-Squeeze -> mmkp ``HourglassSqueezeNet`` + ``CornerPoolHead(pred_kernel_size=1)``:
the same rules, except the stem (a ConvModule and two residual blocks directly in ``stem``, no ResLayer)::

    hg.pre.{0,1,2}.skip.*              -> backbone.stem.{0,1,2}.downsample.*
    hg.pre.{0,1,2}.*                   -> backbone.stem.{0,1,2}.*

and the hourglasses' fire modules and transposed convolutions keep their original names under
``backbone.hourglass_modules.{i}.``. Every shape is kept; nothing is dropped.
"""
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .core import Family, Layout, Rule, StateDictConverter

LITE_ORIGINAL = 'princeton-vl/CornerNet-Lite@6a54505 core/models/CornerNet.py'
CN_ORIGINAL = 'princeton-vl/CornerNet@e5c39a3 models/CornerNet.py (models/py_utils/kp.py)'
SQUEEZE_ORIGINAL = 'princeton-vl/CornerNet-Lite@6a54505 core/models/CornerNet_Squeeze.py'

#: the inter-stack layers, the same in Hourglass-104 and Hourglass-Squeeze (mmdet ``HourglassNet`` names).
STACK_RULES: List[Rule] = [
    (r'^hg\.hgs\.(\d+)\.(.+)\.skip\.', r'backbone.hourglass_modules.\1.\2.downsample.'),
    (r'^hg\.hgs\.', 'backbone.hourglass_modules.'),
    (r'^hg\.cnvs\.', 'backbone.out_convs.'),
    (r'^hg\.inters_\.(\d+)\.0\.', r'backbone.conv1x1s.\1.conv.'),
    (r'^hg\.inters_\.(\d+)\.1\.', r'backbone.conv1x1s.\1.bn.'),
    (r'^hg\.cnvs_\.(\d+)\.0\.', r'backbone.remap_convs.\1.conv.'),
    (r'^hg\.cnvs_\.(\d+)\.1\.', r'backbone.remap_convs.\1.bn.'),
    (r'^hg\.inters\.', 'backbone.inters.'),
]

#: CornerNet-Lite Hourglass-104 (``hg.*``) -> mmdet ``HourglassNet()`` (its defaults are Hourglass-104).
HOURGLASS104_RULES: List[Rule] = [
    (r'^hg\.pre\.0\.', 'backbone.stem.0.'),
    (r'^hg\.pre\.(\d+)\.skip\.', r'backbone.stem.\1.0.downsample.'),
    (r'^hg\.pre\.(\d+)\.', r'backbone.stem.\1.0.'),
] + STACK_RULES

#: CornerNet-Squeeze backbone (``hg.*``) -> mmkp ``HourglassSqueezeNet()``.
HOURGLASS_SQUEEZE_RULES: List[Rule] = [
    (r'^hg\.pre\.(\d+)\.skip\.', r'backbone.stem.\1.downsample.'),
    (r'^hg\.pre\.', 'backbone.stem.'),
] + STACK_RULES


def corner_head_rules(prefix_map: Mapping[str, str],
                      head: str = 'bbox_head.',
                      branches: Sequence[str] = ('tl', 'br'),
                      preds: Sequence[str] = ('heats', 'tags', 'offs')) -> List[Rule]:
    """Rules of a CornerNet-Lite-named keypoint head (``{p}_modules``, ``{p}_{heats,tags,offs}``).

    Args:
        prefix_map (Mapping[str, str]): original -> mmkp key prefix inside one pooling module (a pooling module's
            ``ORIGINAL_PREFIX_MAP``); the module's other keys keep their names.
        head (str): prefix of the head in the detector. Defaults to ``'bbox_head.'``.
        branches (Sequence[str]): keypoint prefixes these rules cover. Defaults to the corners ``('tl', 'br')``;
            ``('ct',)`` for the center branch of the keypoint triplets.
        preds (Sequence[str]): prediction modules of those branches. Defaults to ``('heats', 'tags', 'offs')``;
            ``('heats', 'offs')`` for a center (no embedding): a key of another module then matches no rule.

    Returns:
        list[Rule]: one rule per renamed prefix, then the pass-through of the pooling modules and the prediction
        modules (``0.conv.*``, ``1.*`` of ``_pred_mod``, unchanged).
    """
    group = '|'.join(re.escape(b) for b in branches)
    pred_group = '|'.join(re.escape(p) for p in preds)
    rules: List[Rule] = [(rf'^({group})_modules\.(\d+)\.{re.escape(old)}', rf'{head}\g<1>_modules.\g<2>.{new}')
                         for old, new in prefix_map.items()]
    rules += [
        (rf'^({group})_modules\.(\d+)\.', rf'{head}\g<1>_modules.\g<2>.'),
        (rf'^({group})_({pred_group})\.(\d+)\.', rf'{head}\g<1>_\g<2>.\g<3>.'),
    ]
    return rules


def _corner_pool_prefix_map() -> Mapping[str, str]:
    from mmkp.models.layers import CornerPoolModule
    return CornerPoolModule.ORIGINAL_PREFIX_MAP


#: CornerNet-Lite corner head -> mmkp ``CornerPoolHead`` (CornerNet and CornerNet-Squeeze alike).
CORNER_HEAD_RULES: List[Rule] = corner_head_rules(_corner_pool_prefix_map())

#: princeton-vl/CornerNet names -> princeton-vl/CornerNet-Lite names (same modules, same shapes).
ORIGINAL_TO_LITE: List[Rule] = [
    (r'^pre\.', 'hg.pre.'),
    (r'^kps\.', 'hg.hgs.'),
    (r'^cnvs\.', 'hg.cnvs.'),
    (r'^inters\.', 'hg.inters.'),
    (r'^inters_\.', 'hg.inters_.'),
    (r'^cnvs_\.', 'hg.cnvs_.'),
    (r'^(tl|br)_cnvs\.', r'\1_modules.'),
    (r'^(tl|br)_regrs\.', r'\1_offs.'),
]

CORNERNET_LITE = Layout(
    name='CornerNet-Lite CornerNet_500000.pkl',
    original=LITE_ORIGINAL,
    rules=HOURGLASS104_RULES + CORNER_HEAD_RULES,
    signature=r'^hg\.')
CORNERNET_ORIGINAL = Layout(
    name='CornerNet CornerNet_500000.pkl',
    original=CN_ORIGINAL,
    rules=HOURGLASS104_RULES + CORNER_HEAD_RULES,
    aliases=ORIGINAL_TO_LITE,
    signature=r'^kps\.')
CORNERNET_SQUEEZE = Layout(
    name='CornerNet-Lite CornerNet_Squeeze_500000.pkl',
    original=SQUEEZE_ORIGINAL,
    rules=HOURGLASS_SQUEEZE_RULES + CORNER_HEAD_RULES,
    signature=r'^hg\.')

CORNERNET_FAMILY = Family(
    name='cornernet_to_mmkp',
    description='Convert a released CornerNet_500000.pkl (princeton-vl/CornerNet-Lite or princeton-vl/CornerNet) '
    'to an mmkp checkpoint of the whole model',
    layouts=(CORNERNET_LITE, CORNERNET_ORIGINAL),
    default_config='configs/cornernet/cornernet_hourglass104_released-500k_coco.py')
CORNERNET_SQUEEZE_FAMILY = Family(
    name='cornernet_squeeze_to_mmkp',
    description='Convert the released CornerNet_Squeeze_500000.pkl (princeton-vl/CornerNet-Lite) to an mmkp '
    'checkpoint of the whole model',
    layouts=(CORNERNET_SQUEEZE, ),
    default_config='configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze_released-500k_coco.py')


def convert_backbone(state_dict: Mapping[str, Any],
                     layouts: Sequence[Layout] = (CORNERNET_LITE, CORNERNET_ORIGINAL),
                     prefix: str = 'backbone.') -> Tuple[Dict[str, Any], List[str]]:
    """Rename only the backbone entries of an original state dict (no checks against a model).

    For tests and tools that look at the backbone alone (mmdet ``HourglassNet``, ``HourglassSqueezeNet``); the
    whole-model conversion with every check is :class:`StateDictConverter` / the family scripts.

    Args:
        state_dict (Mapping[str, Any]): original keys (``module.`` optional) -> values (tensors or shapes, passed
            through).
        layouts (Sequence[Layout]): the layouts to read (detected by signature). Defaults to both CornerNet layouts;
            ``(CORNERNET_SQUEEZE,)`` for CornerNet-Squeeze.
        prefix (str): the backbone's prefix in the detector, removed from the result. Defaults to ``'backbone.'``.

    Returns:
        tuple[dict, list[str]]: backbone key (without ``prefix``) -> value in source order, and the source keys
        that are not backbone keys (the head's, or unmapped), in order.

    Raises:
        ConversionError: no (or more than one) layout matches.
        KeyError: two source keys map to the same backbone key.
    """
    converter = StateDictConverter(layouts, {}, name='convert_backbone')
    stripped = [k[len('module.'):] if k.startswith('module.') else k for k in state_dict]
    layout = converter.detect_layout(stripped)
    out: Dict[str, Any] = OrderedDict()
    left: List[str] = []
    for key, short in zip(state_dict, stripped):
        matched, target = layout.map_key(short)
        if not matched or target is None or not target.startswith(prefix):
            left.append(key)
            continue
        target = target[len(prefix):]
        if target in out:
            raise KeyError(f'{key} maps to {target}, which another key already took')
        out[target] = state_dict[key]
    return out, left
