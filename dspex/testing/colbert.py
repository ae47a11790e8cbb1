"""``python -m dspex.testing.colbert --corpus passages.jsonl [--port 0] [--latency 0]``: the
loopback ColBERTv2-protocol server (see :mod:`dspex.testing._colbert`).

It prints ``listening http://127.0.0.1:PORT/api/search`` once ready and serves until
interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from dspex._serving import serve_until_interrupted
from dspex.testing._colbert import ColBERTServer, load_corpus, make_server

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve the corpus, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dspex.testing.colbert", description=__doc__)
    parser.add_argument("--corpus", required=True, help="JSON lines: strings or {text: ...}")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    service = ColBERTServer(load_corpus(args.corpus), latency=args.latency)
    server = make_server(service, args.port)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"listening http://127.0.0.1:{server.server_address[1]}/api/search", flush=True)
    try:
        serve_until_interrupted(server)
    finally:
        service.close_connections()
    return 0


if __name__ == "__main__":
    sys.exit(main())
