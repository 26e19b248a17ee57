"""Convert the released CornerNet-Squeeze checkpoint (princeton-vl/CornerNet-Lite) to mmkp names.

The released ``CornerNet_Squeeze_500000.pkl`` is a bare ``state_dict`` whose keys carry ``module.`` (the original's
``DummyModule`` wrapper); ``core/models/CornerNet_Squeeze.py`` defines the model. Its backbone (``module.hg.*``)
maps onto :class:`mmkp.models.backbones.HourglassSqueezeNet` by the prefix renames in :data:`BACKBONE_RULES`; every
shape is kept. mmkp's fire modules keep the original's inner names, so inside an hourglass only the prefix changes.

Backbone keys (822, of which 125 are BN ``num_batches_tracked`` buffers, optional on loading)::

    module.hg.pre.{0,1,2}.*            -> stem.{0,1,2}.*         (``skip`` -> ``downsample`` in the residuals)
    module.hg.hgs.{i}.*                -> hourglass_modules.{i}.*
    module.hg.cnvs.{i}.*               -> out_convs.{i}.*
    module.hg.inters_.{i}.{0,1}.*      -> conv1x1s.{i}.{conv,bn}.*
    module.hg.cnvs_.{i}.{0,1}.*        -> remap_convs.{i}.{conv,bn}.*
    module.hg.inters.{i}.*             -> inters.{i}.*

Keys left for the head converter (168, not touched here): ``module.tl_modules.*``, ``module.br_modules.*`` (corner
pooling modules), ``module.{tl,br}_heats.*``, ``module.{tl,br}_tags.*``, ``module.{tl,br}_offs.*``.

Usage::

    python tools/model_converters/cornernet_squeeze_to_mmkp.py CornerNet_Squeeze_500000.pkl squeeze_backbone.pth

writes ``{'state_dict': {'backbone.<name>': tensor}, 'meta': {...}}`` (loadable with ``load_from`` / ``init_cfg``
of a detector whose backbone is ``HourglassSqueezeNet``) and lists the keys it did not convert.
"""
import argparse
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

#: (pattern, replacement) pairs tried in order on each original key; the first that matches renames it. Keys that
#: no pattern matches are not backbone keys.
BACKBONE_RULES: List[Tuple[str, str]] = [
    (r'^module\.hg\.pre\.(\d+)\.skip\.', r'stem.\1.downsample.'),
    (r'^module\.hg\.pre\.', 'stem.'),
    (r'^module\.hg\.hgs\.', 'hourglass_modules.'),
    (r'^module\.hg\.cnvs\.', 'out_convs.'),
    (r'^module\.hg\.inters_\.(\d+)\.0\.', r'conv1x1s.\1.conv.'),
    (r'^module\.hg\.inters_\.(\d+)\.1\.', r'conv1x1s.\1.bn.'),
    (r'^module\.hg\.cnvs_\.(\d+)\.0\.', r'remap_convs.\1.conv.'),
    (r'^module\.hg\.cnvs_\.(\d+)\.1\.', r'remap_convs.\1.bn.'),
    (r'^module\.hg\.inters\.', 'inters.'),
]


def convert_backbone(state_dict: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Rename the backbone entries of an original CornerNet-Squeeze ``state_dict``.

    Args:
        state_dict (Mapping[str, Any]): original keys (``module.`` prefix, as in the released file) to values;
            values are passed through untouched, so a key -> shape mapping works as well as tensors.

    Returns:
        tuple[dict, list[str]]: the backbone entries under :class:`HourglassSqueezeNet` names (original order), and
        the original keys that are not backbone keys (the head's), in order.

    Raises:
        KeyError: if two original keys map to the same new name.
    """
    converted: Dict[str, Any] = OrderedDict()
    left: List[str] = []
    for key, value in state_dict.items():
        for pattern, repl in BACKBONE_RULES:
            new_key, hits = re.subn(pattern, repl, key, count=1)
            if hits:
                break
        else:
            left.append(key)
            continue
        if new_key in converted:
            raise KeyError(f'{key} maps to {new_key}, which another key already took')
        converted[new_key] = value
    return converted, left


def main() -> None:
    parser = argparse.ArgumentParser(description='Convert the backbone of the released CornerNet-Squeeze checkpoint')
    parser.add_argument('src', help='original checkpoint (CornerNet_Squeeze_500000.pkl)')
    parser.add_argument('dst', help='output file')
    args = parser.parse_args()

    import torch
    ckpt = torch.load(args.src, map_location='cpu', weights_only=True)
    state_dict = ckpt.get('state_dict', ckpt)
    converted, left = convert_backbone(state_dict)
    out = OrderedDict(('backbone.' + k, v) for k, v in converted.items())
    torch.save({'state_dict': out, 'meta': dict(source=args.src, converter='cornernet_squeeze_to_mmkp')}, args.dst)
    print(f'{len(converted)} backbone tensors written to {args.dst}')
    if left:
        heads = sorted({'.'.join(k.split('.')[:2]) for k in left})
        print(f'{len(left)} keys not converted (head): {", ".join(heads)}')


if __name__ == '__main__':
    main()
