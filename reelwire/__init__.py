"""Reelwire: the composition root (settings, CLI, app factory, embedded services)."""

__version__ = "0.1.0"
