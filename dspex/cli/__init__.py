"""The ``dspex`` command line."""

from dspex.cli._main import main

__all__ = ["main"]
