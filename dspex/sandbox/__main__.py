"""``python -m dspex.sandbox prefetch [--deno-dir DIR]``: fetch Pyodide into Deno's cache.

Run it once on a machine with access to the npm registry; copy the resulting DENO_DIR to
machines without it and set ``DENO_DIR`` there (docs/code-execution.md).
"""

from __future__ import annotations

import argparse
import sys

from dspex.sandbox._deno import PYODIDE_VERSION, prefetch
from dspex.sandbox._errors import SandboxUnavailableError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dspex.sandbox")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser(
        "prefetch", help=f"fetch Pyodide {PYODIDE_VERSION} from the npm registry into DENO_DIR"
    )
    fetch.add_argument("--deno-dir", help="Deno's cache to fill (default: $DENO_DIR, else Deno's)")
    fetch.add_argument("--deno", help="the Deno executable (default: the deno package's)")
    args = parser.parse_args(argv)
    try:
        folder = prefetch(deno=args.deno, deno_dir=args.deno_dir)
    except SandboxUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Pyodide {PYODIDE_VERSION} is in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
