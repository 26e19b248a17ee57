"""Key rules of the released FCOS R-50-FPN checkpoints, whole model: backbone, FPN and head.

Two released files of tianzhi0549/FCOS@a773f12 (``README.md`` model table), each a dict holding ``'model'`` (and
perhaps ``'iteration'``; ``tools/remove_solver_states.py`` removes the solver states) whose 324 keys carry the
``module.`` prefix of ``DistributedDataParallel`` (removed by :mod:`mmkp.converters.core`):

* ``FCOS_R_50_FPN_1x.pth``, ``configs/fcos/fcos_R_50_FPN_1x.yaml`` (the paper model), onto
  ``configs/fcos/fcos_r50-caffe_fpn_gn-head_released-1x_coco.py``;
* ``FCOS_imprv_R_50_FPN_1x.pth``, ``configs/fcos/fcos_imprv_R_50_FPN_1x.yaml`` (center-ness on the box tower,
  normalised regression targets, center sampling, GIoU), onto
  ``configs/fcos/fcos-imprv_r50-caffe_fpn_gn-head_released-1x_coco.py``.

Both files have the same names and shapes (the improvements change no parameter), so one :data:`FCOS_R50` layout
reads both and the keys cannot tell them apart: the family's ``file_configs`` (core's
:meth:`~mmkp.converters.core.Family.config_of_file`) pick the config from the file name (``imprv`` in it: the
improved model), and a name that is neither is refused, asking for ``--config``.

Rules: one exact rule per key of :func:`mmkp.models.dense_heads.original_fcos_key_map` (the single statement of
the names; ``fcos_core/modeling/backbone/{resnet,fpn}.py`` and ``rpn/fcos/fcos.py`` of tianzhi0549/FCOS@a773f12)::

    backbone.body.stem.{conv1,bn1}.*                  -> backbone.{conv1,bn1}.*     (StemWithFixedBatchNorm)
    backbone.body.layer{1-4}.{b}.{conv,bn}{1-3}.*     -> backbone.layer{1-4}.{b}.*  (Bottleneck names are mmdet's)
    backbone.body.layer{1-4}.0.downsample.{0,1}.*     -> backbone.layer{1-4}.0.downsample.{0,1}.*
    backbone.fpn.fpn_inner{2,3,4}.*                   -> neck.lateral_convs.{0,1,2}.conv.*   (C3-C5, 1x1)
    backbone.fpn.fpn_layer{2,3,4}.*                   -> neck.fpn_convs.{0,1,2}.conv.*       (3x3)
    backbone.fpn.top_blocks.{p6,p7}.*                 -> neck.fpn_convs.{3,4}.conv.*         (LastLevelP6P7)
    rpn.head.{cls,bbox}_tower.{3i}.*                  -> bbox_head.{cls,reg}_convs.{i}.conv.*
    rpn.head.{cls,bbox}_tower.{3i+1}.*                -> bbox_head.{cls,reg}_convs.{i}.gn.*
    rpn.head.{cls_logits,bbox_pred,centerness}.*      -> bbox_head.conv_{cls,reg,centerness}.*
    rpn.head.scales.{l}.scale  [1]                    -> bbox_head.scales.{l}.scale  []      (reshaped)

Beyond the renames:

* ``Scale``: the original's holds a ``(1,)`` tensor, mmcv's a 0-dim one: reshaped (``Layout.reshapes``);
* BN ``num_batches_tracked``: the original's ``FrozenBatchNorm2d`` has none; core fills them with 0;
* ``FrozenBatchNorm2d`` (``fcos_core/layers/batch_norm.py``) computes ``x * w / sqrt(v) + b - m * w / sqrt(v)``,
  with no epsilon; mmdet's BN (eval) adds ``eps`` to ``v``. The values are copied as they are and the released-model
  configs set the backbone's ``eps=0``, so that the frozen BNs compute the original's expression;
* the stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool with padding 1), the caffe-style strides (in the 1x1 convs,
  ``STRIDE_IN_1X1``) and the FPN (nearest up-sampling to the lateral's size, P6 on the FPN output P5, P7 on ReLU(P6))
  are those of the mmdet modules the configs build: nothing else to convert.
"""
import re
from typing import List

from mmkp.models.dense_heads.fcos_point_head import original_fcos_key_map
from .core import Family, Layout, Rule

FCOS_ORIGINAL = ('tianzhi0549/FCOS@a773f12 fcos_core/modeling/backbone/{resnet,fpn}.py, '
                 'fcos_core/modeling/rpn/fcos/fcos.py')
#: the original's ``Scale`` (1,) tensors, mmcv's 0-dim ones
SCALE_RESHAPES = (r'^bbox_head\.scales\.\d+\.scale$', )
PAPER_CONFIG = 'configs/fcos/fcos_r50-caffe_fpn_gn-head_released-1x_coco.py'
IMPRV_CONFIG = 'configs/fcos/fcos-imprv_r50-caffe_fpn_gn-head_released-1x_coco.py'
#: file-name patterns (basename, case-insensitive) -> released-model config; first match wins
FILE_NAME_CONFIGS = ((r'imprv', IMPRV_CONFIG), (r'fcos_r_50_fpn', PAPER_CONFIG))


def fcos_rules(num_convs: int = 4, num_levels: int = 5, depth: int = 50) -> List[Rule]:
    """One anchored exact rule per key of :func:`~mmkp.models.dense_heads.original_fcos_key_map`.

    Args:
        num_convs (int): convs per tower. Defaults to 4.
        num_levels (int): FPN levels (scales). Defaults to 5.
        depth (int): ResNet depth, 50 or 101. Defaults to 50.

    Returns:
        list[Rule]: ``(^escaped original key$, mmkp key)``; any other key matches none (refused as unmapped).

    Raises:
        ValueError: an unsupported depth (from the key map).
    """
    return [(f'^{re.escape(src)}$', dst.replace('\\', r'\\'))
            for src, dst in original_fcos_key_map(num_convs, num_levels, depth).items()]


FCOS_R50 = Layout(
    name='FCOS R-50-FPN (FCOS_R_50_FPN_1x.pth / FCOS_imprv_R_50_FPN_1x.pth)',
    original=FCOS_ORIGINAL,
    rules=fcos_rules(depth=50),
    reshapes=SCALE_RESHAPES)

FCOS_FAMILY = Family(
    name='fcos_to_mmkp',
    description='Convert a released FCOS checkpoint (tianzhi0549/FCOS, FCOS_R_50_FPN_1x.pth or '
    'FCOS_imprv_R_50_FPN_1x.pth) to an mmkp checkpoint of the whole model. Both files have the same keys: without '
    f'--config the file name picks the model ("imprv" in it: {IMPRV_CONFIG}; "FCOS_R_50_FPN": {PAPER_CONFIG}).',
    layouts=(FCOS_R50, ),
    default_config=PAPER_CONFIG,
    file_configs=FILE_NAME_CONFIGS)
