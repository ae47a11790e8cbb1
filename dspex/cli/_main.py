"""Argument parsing and dispatch; each command's module is imported only when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dspex.errors import DspexError, UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspex", description="Program language models; optimize them durably."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser(
        "demo",
        help="optimize a program on a bundled task end to end (offline, simulated LM)",
        description="Baseline score, BootstrapFewShotWithRandomSearch as a Prefect flow logged "
        "to MLflow, the optimized score, the registered model loaded back by alias. By "
        "default the LM is dspex's simulated model (dspex-sim/<task>), so it runs offline; "
        "pass --lm to use a real provider.",
    )
    demo.add_argument("--task", default="arithmetic", help="bundled task: arithmetic or factqa")
    demo.add_argument("--dev-size", type=int, default=60, help="validation and test size")
    demo.add_argument("--candidates", type=int, default=4, help="random-search candidates")
    demo.add_argument("--lm", default=None, help="e.g. openai/gpt-4o-mini (default: simulated)")
    demo.add_argument("--concurrency", type=int, default=16)
    demo.add_argument("--runs-dir", default=None, help="default: $DSPEX_RUNS_DIR or ./dspex-runs")

    from dspex.cli._optimize import add_parsers as add_optimize
    from dspex.cli._traces import add_parser as add_traces

    add_optimize(sub)
    add_traces(sub)
    return parser


def run() -> None:
    """The ``dspex`` command (``python -m dspex`` too): :func:`main`, then the process ends
    without the interpreter's teardown (see :mod:`dspex.cli._exit`)."""
    from dspex.cli._exit import exit_without_teardown

    try:
        code = main()
    except SystemExit as e:  # argparse's --help and usage errors, a command's own exit
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    exit_without_teardown(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from dspex._version import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            from dspex.cli._demo import run_demo

            return run_demo(args)
        if args.command in ("optimize", "evaluate", "runs", "promote"):
            from dspex.cli._optimize import run as run_optimize

            return run_optimize(args)
        if args.command == "traces":
            from dspex.cli._traces import run as run_traces

            return run_traces(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DspexError as e:
        print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")
    return 2
