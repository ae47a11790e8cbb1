"""``python -m dspex`` runs the CLI."""

from dspex.cli import run

run()
