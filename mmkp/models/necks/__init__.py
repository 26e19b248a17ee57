"""Necks of mmkp (registered in ``MODELS``)."""
