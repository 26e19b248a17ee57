"""Backbones of mmkp (registered in ``MODELS``)."""
