"""The ``dspex`` command line."""

from dspex.cli._main import main, run

__all__ = ["main", "run"]
