"""Detectors of mmkp (registered in ``MODELS``)."""
