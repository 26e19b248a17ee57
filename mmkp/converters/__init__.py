"""Converters of the originals' released checkpoints to whole mmkp models (``strict=True`` loading).

:mod:`.core` holds the shared machinery (key rules, checks, file handling, the command line of the family scripts
``tools/model_converters/<family>_to_mmkp.py``); one module per family holds its rules (:mod:`.cornernet`,
:mod:`.cornernet_saccade`, :mod:`.centernet`, :mod:`.centernet_triplet`, :mod:`.fcos`).
"""
from .core import (OPTIONAL_TARGETS, ConversionError, ConversionResult, Family, Layout, StateDictConverter,
                   build_model_from_config, convert_file, extract_state_dict, load_source, main, save_converted,
                   target_shapes_from_config, target_shapes_from_model)
from .cornernet import (CORNERNET_FAMILY, CORNERNET_LITE, CORNERNET_ORIGINAL, CORNERNET_SQUEEZE,
                        CORNERNET_SQUEEZE_FAMILY, convert_backbone)
from .cornernet_saccade import CORNERNET_SACCADE, CORNERNET_SACCADE_FAMILY
from .centernet import CENTERNET_DLA, CENTERNET_FAMILY, CENTERNET_HOURGLASS, CENTERNET_RESDCN
from .centernet_triplet import CENTERNET_52, CENTERNET_104, CENTERNET_TRIPLET_FAMILY
from .fcos import FCOS_FAMILY, FCOS_R50

__all__ = [
    'OPTIONAL_TARGETS', 'ConversionError', 'ConversionResult', 'Family', 'Layout', 'StateDictConverter',
    'build_model_from_config', 'convert_file', 'extract_state_dict', 'load_source', 'main', 'save_converted',
    'target_shapes_from_config', 'target_shapes_from_model', 'CORNERNET_FAMILY', 'CORNERNET_LITE',
    'CORNERNET_ORIGINAL', 'CORNERNET_SQUEEZE', 'CORNERNET_SQUEEZE_FAMILY', 'convert_backbone', 'CORNERNET_SACCADE',
    'CORNERNET_SACCADE_FAMILY', 'CENTERNET_DLA', 'CENTERNET_FAMILY', 'CENTERNET_HOURGLASS', 'CENTERNET_RESDCN',
    'CENTERNET_52', 'CENTERNET_104', 'CENTERNET_TRIPLET_FAMILY', 'FCOS_FAMILY', 'FCOS_R50'
]
