"""``python -m dspex.testing.server``: the loopback OpenAI-compatible simulator server.

See :mod:`dspex.testing._server` for what it serves; ``--help`` for the options.
"""

from __future__ import annotations

import sys

from dspex.testing._server import Server, build_responder, main

__all__ = ["Server", "build_responder", "main"]

if __name__ == "__main__":
    sys.exit(main())
