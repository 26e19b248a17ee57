"""Key rules of the released CenterNet keypoint-triplet checkpoints (whole model: backbone and head).

Two released files of Duankaiwen/CenterNet@3ad3a10, each a bare ``state_dict`` whose keys carry one ``module.`` (the
original's ``DummyModule`` wrapper, ``nnet/py_factory.py``; :mod:`mmkp.converters.core` removes it before the rules
run), saved under PyTorch 0.4.1, so the BN ``num_batches_tracked`` buffers are expected to be present:

* ``CenterNet-104_480000.pkl``: ``models/CenterNet-104.py`` (``kp`` of ``models/py_utils/kp.py``, 2 stacks),
  1260 tensors (198 ``num_batches_tracked``), layout :data:`CENTERNET_104`;
* ``CenterNet-52_480000.pkl``: ``models/CenterNet-52.py`` (1 stack, no inter-stack layers), 630 tensors (99
  ``num_batches_tracked``), layout :data:`CENTERNET_52`.

Target: mmkp ``StackedHourglassNet`` (mmdet ``HourglassNet`` names) + ``TripletHead``
(``configs/centernet_triplet/``). The backbone is named as in princeton-vl/CornerNet@e5c39a3 ``models/py_utils/kp.py``
(``pre``, ``kps``, ``cnvs``, ``inters``, ``inters_``, ``cnvs_``), the corner branches too (``{tl,br}_cnvs``,
``{tl,br}_{heats,tags,regrs}``); the center branch adds ``ct_cnvs`` and ``ct_{heats,regrs}``. So the rules are those of
:mod:`mmkp.converters.cornernet`, reused: the aliases ``ORIGINAL_TO_LITE`` (after two for the center branch) write
the keys in the CornerNet-Lite names, then ``HOURGLASS104_RULES`` and ``corner_head_rules`` map them (``{s}`` a
stack, ``*`` the rest of the key, unchanged)::

    {pre,kps,cnvs,inters,inters_,cnvs_}.*  -> backbone.*   (the CornerNet rules: stem, hourglass_modules, out_convs,
                                                             inters, conv1x1s, remap_convs)
    {tl,br}_cnvs.{s}.P1_look_conv.*     -> bbox_head.{tl,br}_modules.{s}.p1_look_conv.*   (cascade corner pooling,
    {tl,br}_cnvs.{s}.P2_look_conv.*     -> bbox_head.{tl,br}_modules.{s}.p2_look_conv.*    CenterNet-104.py::pool)
    {tl,br,ct}_cnvs.{s}.p_conv1.*       -> bbox_head.{tl,br,ct}_modules.{s}.p_conv1.conv.*
    {tl,br,ct}_cnvs.{s}.p_bn1.*         -> bbox_head.{tl,br,ct}_modules.{s}.p_conv1.bn.*
    {tl,br,ct}_cnvs.{s}.conv1.*         -> bbox_head.{tl,br,ct}_modules.{s}.conv1.conv.*
    {tl,br,ct}_cnvs.{s}.bn1.*           -> bbox_head.{tl,br,ct}_modules.{s}.conv1.bn.*
    {tl,br,ct}_cnvs.{s}.*               -> bbox_head.{tl,br,ct}_modules.{s}.*  (p1_conv1, p2_conv1, conv2, look_conv1,
                                                                                look_conv2: ConvModules, same names)
    {tl,br}_{heats,tags}.{s}.*          -> bbox_head.{tl,br}_{heats,tags}.{s}.*   ({0.conv,1}.{weight,bias})
    ct_heats.{s}.*                      -> bbox_head.ct_heats.{s}.*
    {tl,br,ct}_regrs.{s}.*              -> bbox_head.{tl,br,ct}_offs.{s}.*

The pooling renames are ``CascadeCornerPoolModule.ORIGINAL_PREFIX_MAP`` (corners, ``CenterNet-104.py::pool``) and
``CenterPoolModule.ORIGINAL_PREFIX_MAP`` (center, ``pool_cross``) of :mod:`mmkp.models.layers.pool_modules`, read from
there. The center's rules are ``corner_head_rules`` for the branch ``ct`` with heatmap and offset modules only
(:func:`center_head_rules`: a ``ct_tags`` key, which the original does not have, matches no rule and is refused).
Every shape is kept; nothing is dropped.

Which file, which config
    The CenterNet-52 file's keys are a subset of the CenterNet-104 file's (stack 0 of every module, same names and
    shapes), so no key tells the 52 file apart, and core's signature detection (a key only one layout has) cannot
    choose. :class:`TripletFamily` reads the layout off the number of hourglass stacks instead (distinct ``{s}`` of
    ``kps.{s}.``): 1 -> :data:`CENTERNET_52`, 2 -> :data:`CENTERNET_104`, anything else is refused naming the file
    (:meth:`~mmkp.converters.core.Family.layout_of`). Each layout has its released config (``configs``), which
    ``tools/model_converters/centernet_triplet_to_mmkp.py`` uses when ``--config`` is not given (core's
    ``convert_file`` reads the file once, detects the layout and picks its config); with ``--config`` given, that
    config is used as it is, and a file of the other model is then refused by core's checks (missing keys or keys
    the model does not have, each named).
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

from .core import ConversionError, Family, Layout, Rule, StateDictConverter
from .cornernet import HOURGLASS104_RULES, ORIGINAL_TO_LITE, corner_head_rules

ORIGINAL_104 = 'Duankaiwen/CenterNet@3ad3a10 models/CenterNet-104.py (models/py_utils/kp.py)'
ORIGINAL_52 = 'Duankaiwen/CenterNet@3ad3a10 models/CenterNet-52.py (models/py_utils/kp.py)'
CONFIG_104 = 'configs/centernet_triplet/centernet-triplet_hourglass104_released-480k_coco.py'
CONFIG_52 = 'configs/centernet_triplet/centernet-triplet_hourglass52_released-480k_coco.py'
#: the original's hourglass stacks: ``kps.{s}.`` (after ``module.`` is removed).
STACK_PATTERN = r'^kps\.(\d+)\.'

#: Duankaiwen/CenterNet center-branch names -> the CornerNet-Lite-style names (tried before ``ORIGINAL_TO_LITE``).
CENTER_TO_LITE: List[Rule] = [
    (r'^ct_cnvs\.', 'ct_modules.'),
    (r'^ct_regrs\.', 'ct_offs.'),
]
#: Duankaiwen/CenterNet names -> CornerNet-Lite names (backbone, corner and center branches).
TRIPLET_ALIASES: List[Rule] = CENTER_TO_LITE + ORIGINAL_TO_LITE

def center_head_rules(prefix_map: Mapping[str, str], head: str = 'bbox_head.') -> List[Rule]:
    """Rules of the center branch (``ct_modules``, ``ct_heats``, ``ct_offs`` in CornerNet-Lite names):
    ``corner_head_rules`` of :mod:`mmkp.converters.cornernet` for the branch ``ct`` with heatmap and offset modules
    only (the center has no embedding: a ``ct_tags`` key matches no rule and is refused).

    Args:
        prefix_map (Mapping[str, str]): original -> mmkp key prefix inside the center pooling module
            (``CenterPoolModule.ORIGINAL_PREFIX_MAP``).
        head (str): prefix of the head in the detector. Defaults to ``'bbox_head.'``.

    Returns:
        list[Rule]: the center branch's rules.
    """
    return corner_head_rules(prefix_map, head, branches=('ct', ), preds=('heats', 'offs'))


def _prefix_maps() -> Tuple[Mapping[str, str], Mapping[str, str]]:
    from mmkp.models.layers import CascadeCornerPoolModule, CenterPoolModule
    return CascadeCornerPoolModule.ORIGINAL_PREFIX_MAP, CenterPoolModule.ORIGINAL_PREFIX_MAP


_CASCADE_MAP, _CENTER_MAP = _prefix_maps()
#: the triplet head (CornerNet-Lite names) -> mmkp ``TripletHead``.
TRIPLET_HEAD_RULES: List[Rule] = corner_head_rules(_CASCADE_MAP) + center_head_rules(_CENTER_MAP)
#: the whole model, after :data:`TRIPLET_ALIASES`.
TRIPLET_RULES: List[Rule] = HOURGLASS104_RULES + TRIPLET_HEAD_RULES

# ``signature`` is required by core for several layouts. Only CenterNet-104's is exclusive (a second stack);
# CenterNet-52's matches the CenterNet-104 file too: TripletFamily detects by stack count, not by signature.
CENTERNET_104 = Layout(
    name='CenterNet CenterNet-104_480000.pkl',
    original=ORIGINAL_104,
    rules=TRIPLET_RULES,
    aliases=TRIPLET_ALIASES,
    signature=r'^kps\.1\.')
CENTERNET_52 = Layout(
    name='CenterNet CenterNet-52_480000.pkl',
    original=ORIGINAL_52,
    rules=TRIPLET_RULES,
    aliases=TRIPLET_ALIASES,
    signature=r'^kps\.0\.')

#: layout name -> released-model config (relative to the repository root).
RELEASED_CONFIGS: Dict[str, str] = {CENTERNET_104.name: CONFIG_104, CENTERNET_52.name: CONFIG_52}


def count_stacks(keys: Sequence[str]) -> int:
    """The number of distinct hourglass stacks ``kps.{s}.`` among ``keys`` (``module.`` already removed)."""
    return len({m.group(1) for m in (re.match(STACK_PATTERN, k) for k in keys) if m})


class StackCountConverter(StateDictConverter):
    """:class:`StateDictConverter` whose layout is chosen by the number of hourglass stacks in the source.

    Args:
        layouts (Sequence[Layout]): the layouts read.
        stacks (Sequence[int]): the stacks of each layout (one distinct count per layout).
        target_shapes (Mapping[str, Sequence[int]]): the model's keys -> shapes.
        **kwargs: the other :class:`StateDictConverter` arguments.

    Raises:
        ValueError: ``stacks`` not one distinct count per layout (and as :class:`StateDictConverter`).
    """

    def __init__(self, layouts: Sequence[Layout], stacks: Sequence[int], target_shapes: Mapping[str, Sequence[int]],
                 **kwargs) -> None:
        super().__init__(layouts, target_shapes, **kwargs)
        stacks = tuple(int(s) for s in stacks)
        if len(stacks) != len(self.layouts) or len(set(stacks)) != len(stacks):
            raise ValueError(f'stacks must give one distinct count per layout, got {stacks} for '
                             f'{len(self.layouts)} layouts')
        self.stacks = stacks

    def detect_layout(self, keys: Sequence[str], source: str = '<state_dict>') -> Layout:
        """The layout with as many stacks as ``keys`` hold (``module.`` removed).

        Raises:
            ConversionError: no layout has that many stacks; the message names the file and the counts read.
        """
        found = count_stacks(keys)
        for layout, stacks in zip(self.layouts, self.stacks):
            if stacks == found:
                return layout
        known = ', '.join(f'{lay.name}: {n}' for lay, n in zip(self.layouts, self.stacks))
        raise ConversionError(f'{source}: holds {found} hourglass stack(s) (keys {STACK_PATTERN!r}); the layouts '
                              f'{self.name} reads have {known}; first keys: {", ".join(map(repr, list(keys)[:3]))}')


@dataclass(frozen=True)
class TripletFamily(Family):
    """A :class:`Family` whose layouts are told apart by their number of stacks (:class:`StackCountConverter`).

    Args:
        stacks (Sequence[int]): hourglass stacks of each layout, in ``layouts`` order. Defaults to ().
        (the :class:`Family` arguments; ``configs`` gives each layout its released config.)
    """
    stacks: Sequence[int] = ()

    def converter(self, target_shapes: Mapping[str, Sequence[int]]) -> StackCountConverter:
        """A :class:`StackCountConverter` of this family's layouts onto ``target_shapes``."""
        return StackCountConverter(self.layouts, self.stacks, target_shapes, name=self.name)


CENTERNET_TRIPLET_FAMILY = TripletFamily(
    name='centernet_triplet_to_mmkp',
    description='Convert a released CenterNet-104_480000.pkl or CenterNet-52_480000.pkl (Duankaiwen/CenterNet, '
    'keypoint triplets) to an mmkp checkpoint of the whole model',
    layouts=(CENTERNET_104, CENTERNET_52),
    default_config=CONFIG_104,
    configs=RELEASED_CONFIGS,
    stacks=(2, 1))
