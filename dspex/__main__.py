"""``python -m dspex`` runs the CLI."""

from dspex.cli import main

raise SystemExit(main())
