"""Convert a released CornerNet (Hourglass-104) checkpoint to mmdet's ``HourglassNet`` names (backbone part).

Two files named ``CornerNet_500000.pkl`` exist, both bare ``state_dict`` s with ``module.`` keys and identical
shapes:

* princeton-vl/CornerNet-Lite (``core/models/CornerNet.py``): backbone under ``module.hg.{pre,hgs,cnvs,inters,
  inters_,cnvs_}``; head under ``module.{tl,br}_modules``, ``module.{tl,br}_{heats,tags,offs}``;
* princeton-vl/CornerNet (``models/py_utils/kp.py``): backbone under ``module.{pre,kps,cnvs,inters,inters_,cnvs_}``;
  head under ``module.{tl,br}_cnvs``, ``module.{tl,br}_{heats,tags,regrs}``.

The original layout is first written in the Lite names (:data:`ORIGINAL_TO_LITE`), then :data:`BACKBONE_RULES`
rename the backbone keys to mmdet's ``HourglassNet()`` (defaults = Hourglass-104), shapes unchanged::

    module.hg.pre.0.*                  -> stem.0.*               (ConvModule: conv, bn)
    module.hg.pre.1.*                  -> stem.1.0.*             (ResLayer of one BasicBlock)
    module.hg.hgs.{i}.*                -> hourglass_modules.{i}.*
    module.hg.cnvs.{i}.*               -> out_convs.{i}.*
    module.hg.inters_.{i}.{0,1}.*      -> conv1x1s.{i}.{conv,bn}.*
    module.hg.cnvs_.{i}.{0,1}.*        -> remap_convs.{i}.{conv,bn}.*
    module.hg.inters.{i}.*             -> inters.{i}.*
    ... .skip.{0,1}.* anywhere         -> ... .downsample.{0,1}.*  (residual projection)

960 backbone keys, of which 160 are BN ``num_batches_tracked`` buffers (the original CornerNet repository's PyTorch 0.4.0
file most likely lacks them: optional). The 168 head keys are returned untouched for the head converter.

Usage::

    python tools/model_converters/cornernet_to_mmkp.py CornerNet_500000.pkl cornernet_backbone.pth

writes ``{'state_dict': {'backbone.<name>': tensor}, 'meta': {...}}`` and lists the keys it did not convert.
"""
import argparse
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

#: Original CornerNet repository backbone prefixes -> CornerNet-Lite prefixes (identical modules and shapes).
ORIGINAL_TO_LITE: List[Tuple[str, str]] = [
    (r'^module\.pre\.', 'module.hg.pre.'),
    (r'^module\.kps\.', 'module.hg.hgs.'),
    (r'^module\.cnvs\.', 'module.hg.cnvs.'),
    (r'^module\.inters\.', 'module.hg.inters.'),
    (r'^module\.inters_\.', 'module.hg.inters_.'),
    (r'^module\.cnvs_\.', 'module.hg.cnvs_.'),
]

#: (pattern, replacement) pairs tried in order on each CornerNet-Lite key; the first that matches renames it.
#: Keys that no pattern matches are not backbone keys.
BACKBONE_RULES: List[Tuple[str, str]] = [
    (r'^module\.hg\.pre\.0\.', 'stem.0.'),
    (r'^module\.hg\.pre\.(\d+)\.', r'stem.\1.0.'),
    (r'^module\.hg\.hgs\.', 'hourglass_modules.'),
    (r'^module\.hg\.cnvs\.', 'out_convs.'),
    (r'^module\.hg\.inters_\.(\d+)\.0\.', r'conv1x1s.\1.conv.'),
    (r'^module\.hg\.inters_\.(\d+)\.1\.', r'conv1x1s.\1.bn.'),
    (r'^module\.hg\.cnvs_\.(\d+)\.0\.', r'remap_convs.\1.conv.'),
    (r'^module\.hg\.cnvs_\.(\d+)\.1\.', r'remap_convs.\1.bn.'),
    (r'^module\.hg\.inters\.', 'inters.'),
]


def _first_match(key: str, rules: List[Tuple[str, str]]) -> Tuple[str, bool]:
    for pattern, repl in rules:
        new_key, hits = re.subn(pattern, repl, key, count=1)
        if hits:
            return new_key, True
    return key, False


def convert_backbone(state_dict: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Rename the backbone entries of an original CornerNet (Hourglass-104) ``state_dict`` to mmdet's names.

    Args:
        state_dict (Mapping[str, Any]): original keys (``module.`` prefix; CornerNet-Lite or original CornerNet
            layout) to values; values are passed through untouched, so a key -> shape mapping works as well.

    Returns:
        tuple[dict, list[str]]: the backbone entries under mmdet ``HourglassNet`` names (original order), and the
        original keys that are not backbone keys (the head's), in order.

    Raises:
        KeyError: if two original keys map to the same new name.
    """
    converted: Dict[str, Any] = OrderedDict()
    left: List[str] = []
    for key, value in state_dict.items():
        lite_key, _ = _first_match(key, ORIGINAL_TO_LITE)
        new_key, matched = _first_match(lite_key, BACKBONE_RULES)
        if not matched:
            left.append(key)
            continue
        new_key = new_key.replace('.skip.', '.downsample.')
        if new_key in converted:
            raise KeyError(f'{key} maps to {new_key}, which another key already took')
        converted[new_key] = value
    return converted, left


def main() -> None:
    parser = argparse.ArgumentParser(description='Convert the backbone of a released CornerNet checkpoint')
    parser.add_argument('src', help='original checkpoint (CornerNet_500000.pkl, either layout)')
    parser.add_argument('dst', help='output file')
    args = parser.parse_args()

    import torch
    ckpt = torch.load(args.src, map_location='cpu', weights_only=True)
    state_dict = ckpt.get('state_dict', ckpt)
    converted, left = convert_backbone(state_dict)
    out = OrderedDict(('backbone.' + k, v) for k, v in converted.items())
    torch.save({'state_dict': out, 'meta': dict(source=args.src, converter='cornernet_to_mmkp')}, args.dst)
    print(f'{len(converted)} backbone tensors written to {args.dst}')
    if left:
        heads = sorted({'.'.join(k.split('.')[:2]) for k in left})
        print(f'{len(left)} keys not converted (head): {", ".join(heads)}')


if __name__ == '__main__':
    main()
