"""Key rules of the released CenterNet (Objects as Points) checkpoints, whole model: backbone, neck and head.

Three released files of xingyizhou/CenterNet@4c50fd3 (``readme/MODEL_ZOO.md``), each a dict with ``'epoch'`` and
``'state_dict'`` (and perhaps ``'optimizer'``) whose keys carry no prefix (``src/lib/models/model.py::save_model``
saves the bare network; a ``module.`` would be removed by :mod:`mmkp.converters.core` anyway). They are told apart
by their keys (:attr:`Layout.signature`):

* ``ctdet_coco_hg.pth``, ``src/lib/models/networks/large_hourglass.py`` (``HourglassNet``, 2 stacks): 984 tensors,
  layout :data:`CENTERNET_HOURGLASS` (a key ``kps.*``), onto mmdet ``HourglassNet`` + mmkp
  ``CenterHeatmapHead(num_stacks=2)`` (``configs/centernet/centernet_hourglass104_released_coco.py``);
* ``ctdet_coco_dla_2x.pth``, ``src/lib/models/networks/pose_dla_dcn.py`` (``DLASeg``, DLA-34): 400 tensors, layout
  :data:`CENTERNET_DLA` (a key ``dla_up.*``), onto mmkp ``DLA`` + ``DLANeck`` + ``CenterHeatmapHead``
  (``configs/centernet/centernet_dla34-dcnv2-2x_released_coco.py``);
* ``ctdet_coco_resdcn18.pth``, ``src/lib/models/networks/resnet_dcn.py`` (``PoseResNet``, ResNet-18): 177 tensors,
  layout :data:`CENTERNET_RESDCN` (a key ``deconv_layers.*``), onto mmdet ``ResNet`` + ``CTResNetNeck(use_dcn=True)``
  + mmkp ``CenterHeatmapHead`` (``configs/centernet/centernet_r18-dcnv2_released_coco.py``). The same rules read
  the ResNet-101 file ``ctdet_coco_resdcn101.pth`` (Bottleneck names are mmdet's too) with ``--config`` a
  ResNet-101 config (``configs/centernet/centernet_r101-dcnv2_8xb12-crop512-140e_coco.py``); its key list was not
  checked here.

Rules (``{i}`` a stack, ``{s}`` an up-sampling stage 0..2, ``*`` the rest of the key, unchanged)::

    Hourglass-104: the backbone is CornerNet's, under princeton-vl/CornerNet's names (pre, kps, cnvs, inters,
    inters_, cnvs_): cornernet.ORIGINAL_TO_LITE then cornernet.HOURGLASS104_RULES (-> backbone.stem / hourglass_modules
    / out_convs / conv1x1s / remap_convs / inters);
    {hm,wh,reg}.{i}.0.conv.*          -> bbox_head.{heatmap,size,offset}_branches.{i}.0.*  (3x3 conv + bias, ReLU)
    {hm,wh,reg}.{i}.1.*               -> bbox_head.{heatmap,size,offset}_branches.{i}.2.*  (1x1 conv)

    DLA-34: base.fc.* dropped (the ImageNet classifier the original attaches and never runs), base.* -> backbone.*
    (mmkp.models.backbones.dla.ORIGINAL_KEY_RULES); dla_up.* / ida_up.* -> neck.* with conv_offset_mask -> conv_offset
    (mmkp.models.necks.dla_neck.ORIGINAL_KEY_RULES); the neck keeps the DCN bias, so nothing is folded;
    {hm,wh,reg}.{0,2}.*               -> bbox_head.{heatmap,size,offset}_branches.0.{0,2}.*

    ResNet-DCN: {conv1,bn1,layer1..4}.* -> backbone.* (torchvision names = mmdet ResNet's);
    deconv_layers.{6s}.weight                 -> neck.deconv_layers.{2s}.conv.weight       (DCN 3x3)
    deconv_layers.{6s}.conv_offset_mask.*     -> neck.deconv_layers.{2s}.conv.conv_offset.*
    deconv_layers.{6s}.bias                   folded into neck.deconv_layers.{2s}.bn.running_mean (m' = m - b)
    deconv_layers.{6s+1}.*                    -> neck.deconv_layers.{2s}.bn.*
    deconv_layers.{6s+3}.weight               -> neck.deconv_layers.{2s+1}.conv.weight     (ConvTranspose 4x4, s 2)
    deconv_layers.{6s+4}.*                    -> neck.deconv_layers.{2s+1}.bn.*
    {hm,wh,reg}.{0,2}.*                       -> bbox_head.{heatmap,size,offset}_branches.0.{0,2}.*

Every shape is kept. What cannot match the original exactly:

* every deformable convolution (DLA neck, ResNet-DCN neck): mmcv's ``ModulatedDeformConv2dPack`` against the
  original's ``DCNv2`` (``src/lib/models/networks/DCNv2``): the same operation (27-channel offset/mask conv, offsets
  as (dy, dx) per sampling point, sigmoid masks, bilinear sampling with zeros outside), but two implementations of it,
  so equal only up to float rounding. Against an independent DCNv2 written from the original
  (``tests/parity/original_centernet_reference.py``) mmcv's op is bit-equal in float32 on the CPU; the original's
  compiled CUDA op itself was not run (configs/centernet/README.md, "Forward parity with the original");
* the folded ResNet-DCN biases: ``m - b`` is rounded once in float32, so the BN input differs from the original's
  ``x + b - m`` by float rounding (about 1e-7 relative to |m|, |b|), in evaluation; in training the batch mean absorbs
  the bias as in the original, only the running mean is tracked shifted by ``b``;
* nothing else: the Hourglass-104 (mmdet ``HourglassNet``, nearest up-sampling, no max-pool, as ``large_hourglass``),
  DLA-34, ResNet and the heads compute the original's operations.
"""
from typing import Dict, List, Mapping, Tuple

from mmkp.models.backbones.dla import ORIGINAL_KEY_RULES as DLA_BACKBONE_RULES
from mmkp.models.necks.dla_neck import ORIGINAL_KEY_RULES as DLA_NECK_RULES
from .core import (Family, Layout, Rule)
from .cornernet import HOURGLASS104_RULES, ORIGINAL_TO_LITE

HG_ORIGINAL = 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/large_hourglass.py'
DLA_ORIGINAL = 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/pose_dla_dcn.py'
RESDCN_ORIGINAL = 'xingyizhou/CenterNet@4c50fd3 src/lib/models/networks/resnet_dcn.py'

#: the original's head names -> ``CenterHeatmapHead`` branch lists.
HEAD_BRANCHES: Mapping[str, str] = {'hm': 'heatmap_branches', 'wh': 'size_branches', 'reg': 'offset_branches'}
#: up-sampling stages of ``PoseResNet._make_deconv_layer`` (3: 256, 128, 64 channels, output stride 4).
NUM_DECONV_STAGES = 3
#: modules per stage in the original ``deconv_layers`` Sequential: DCN, BN, ReLU, ConvTranspose2d, BN, ReLU.
ORIGINAL_STAGE_LEN = 6


def center_head_rules(num_stacks: int, head: str = 'bbox_head.') -> List[Rule]:
    """Rules of the original ``hm`` / ``wh`` / ``reg`` heads onto ``CenterHeatmapHead``.

    Args:
        num_stacks (int): 1: ``{hm,wh,reg}.{0,2}.*`` (``resnet_dcn`` / ``pose_dla_dcn``: ``Sequential(conv3x3, ReLU,
            conv1x1)``); > 1: ``{hm,wh,reg}.{i}.{0.conv,1}.*`` for each stack i (``large_hourglass``: a
            ``ModuleList`` of ``Sequential(convolution(with_bn=False), conv1x1)``).
        head (str): prefix of the head in the detector. Defaults to ``'bbox_head.'``.

    Returns:
        list[Rule]: anchored rules; any other head key matches none of them (refused as unmapped).

    Raises:
        ValueError: ``num_stacks`` < 1.
    """
    if num_stacks < 1:
        raise ValueError(f'num_stacks must be >= 1, got {num_stacks}')
    rules: List[Rule] = []
    for name, branches in HEAD_BRANCHES.items():
        if num_stacks == 1:
            rules += [(rf'^{name}\.{j}\.', f'{head}{branches}.0.{j}.') for j in (0, 2)]
        else:
            stacks = '|'.join(str(i) for i in range(num_stacks))
            rules += [(rf'^{name}\.({stacks})\.0\.conv\.', rf'{head}{branches}.\1.0.'),
                      (rf'^{name}\.({stacks})\.1\.', rf'{head}{branches}.\1.2.')]
    return rules


def resdcn_neck_rules(num_stages: int = NUM_DECONV_STAGES, neck: str = 'neck.') -> Tuple[List[Rule], List[Rule]]:
    """Rules and bias folds of ``PoseResNet.deconv_layers`` onto mmdet ``CTResNetNeck(use_dcn=True)``.

    The original is one ``Sequential`` of 6 modules per stage (DCN with bias, BN, ReLU, ConvTranspose2d without bias,
    BN, ReLU); mmdet's is 2 ``ConvModule`` s per stage (``conv`` + ``bn``, the DCN without bias).

    Args:
        num_stages (int): up-sampling stages. Defaults to 3.
        neck (str): prefix of the neck in the detector. Defaults to ``'neck.'``.

    Returns:
        tuple[list[Rule], list[Rule]]: the key rules, and the bias folds (each DCN bias into the running mean of the
        BN after it; see :mod:`mmkp.converters.core`).
    """
    rules: List[Rule] = []
    folds: List[Rule] = []
    for s in range(num_stages):
        dcn, up = ORIGINAL_STAGE_LEN * s, ORIGINAL_STAGE_LEN * s + 3
        rules += [
            (rf'^deconv_layers\.{dcn}\.conv_offset_mask\.', f'{neck}deconv_layers.{2 * s}.conv.conv_offset.'),
            (rf'^deconv_layers\.{dcn}\.weight$', f'{neck}deconv_layers.{2 * s}.conv.weight'),
            (rf'^deconv_layers\.{dcn + 1}\.', f'{neck}deconv_layers.{2 * s}.bn.'),
            (rf'^deconv_layers\.{up}\.weight$', f'{neck}deconv_layers.{2 * s + 1}.conv.weight'),
            (rf'^deconv_layers\.{up + 1}\.', f'{neck}deconv_layers.{2 * s + 1}.bn.'),
        ]
        folds.append((rf'^deconv_layers\.{dcn}\.bias$', f'{neck}deconv_layers.{2 * s}.bn.running_mean'))
    return rules, folds


#: torchvision ResNet names (``resnet_dcn.PoseResNet``) -> mmdet ``ResNet`` (the same names).
RESNET_RULES: List[Rule] = [(r'^(conv1|bn1|layer[1-4])\.', r'backbone.\1.')]
_RESDCN_NECK_RULES, RESDCN_BIAS_FOLDS = resdcn_neck_rules()

CENTERNET_HOURGLASS = Layout(
    name='CenterNet ctdet_coco_hg.pth',
    original=HG_ORIGINAL,
    rules=HOURGLASS104_RULES + center_head_rules(2),
    aliases=ORIGINAL_TO_LITE,
    signature=r'^kps\.')
CENTERNET_DLA = Layout(
    name='CenterNet ctdet_coco_dla_2x.pth',
    original=DLA_ORIGINAL,
    rules=list(DLA_BACKBONE_RULES) + list(DLA_NECK_RULES) + center_head_rules(1),
    signature=r'^dla_up\.')
CENTERNET_RESDCN = Layout(
    name='CenterNet ctdet_coco_resdcn18.pth',
    original=RESDCN_ORIGINAL,
    rules=RESNET_RULES + _RESDCN_NECK_RULES + center_head_rules(1),
    signature=r'^deconv_layers\.',
    bias_folds=RESDCN_BIAS_FOLDS)

#: the released-model config of each layout, relative to the repository root (the default ``--config``).
RELEASED_CONFIGS: Dict[str, str] = {
    CENTERNET_HOURGLASS.name: 'configs/centernet/centernet_hourglass104_released_coco.py',
    CENTERNET_DLA.name: 'configs/centernet/centernet_dla34-dcnv2-2x_released_coco.py',
    CENTERNET_RESDCN.name: 'configs/centernet/centernet_r18-dcnv2_released_coco.py',
}

CENTERNET_FAMILY = Family(
    name='centernet_to_mmkp',
    description='Convert a released CenterNet (Objects as Points, xingyizhou/CenterNet) ctdet_coco_hg.pth, '
    'ctdet_coco_dla_2x.pth or ctdet_coco_resdcn18.pth to an mmkp checkpoint of the whole model',
    layouts=(CENTERNET_HOURGLASS, CENTERNET_DLA, CENTERNET_RESDCN),
    default_config=RELEASED_CONFIGS[CENTERNET_RESDCN.name],
    configs=RELEASED_CONFIGS)


def detect_layout(state_dict: Mapping[str, object], source: str = '<state_dict>') -> Layout:
    """Which of the three released files ``state_dict`` is (by signature keys, ``module.`` ignored):
    :meth:`~mmkp.converters.core.Family.layout_of` of :data:`CENTERNET_FAMILY`.

    Raises:
        ConversionError: none or several layouts match; the message names the signatures and the first keys.
    """
    return CENTERNET_FAMILY.layout_of(list(state_dict), source)
