"""Detectors of mmkp (registered in ``MODELS``)."""
from .cornernet_saccade import CornerNetSaccade, crop_to_original, location_nms, reference_locations  # noqa: F401
