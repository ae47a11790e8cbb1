"""Client CPU per call of ``Evaluate`` over ``Predict`` without HTTP (an instant transport).

What ``lm_throughput.py`` measures minus the network and the server: the adapter's format and
parse, ``Predict``, the LM client (no cache) and ``Evaluate``'s scheduling and scoring, all on
dspex's loop thread. The transport is an in-process object that yields to the loop once and
returns a canned ``[[ ## answer ## ]]`` completion, so the figure is the stack's own.

For instruction counts, which the machine's load does not move, run it under callgrind twice
and take the difference per call::

    valgrind --tool=callgrind python benchmarks/client_stack.py --calls 2000
    valgrind --tool=callgrind python benchmarks/client_stack.py --calls 500
    # (Ir of the first - Ir of the second) / 1500 = instructions per call

Usage::

    python benchmarks/client_stack.py                      # 2000 calls, 256 in flight
    python benchmarks/client_stack.py --calls 5000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import time

import dspex
from dspex.datasets import load_task
from dspex.lm import LMRequest, RawCompletion

_ANSWER = "[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]"


class _AtOnce:
    """A transport that yields to the loop once, then answers (safe on any loop)."""

    loop_safe = True

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        await asyncio.sleep(0)
        return RawCompletion([_ANSWER], 120, 12, ["stop"], "bench")

    async def aclose(self) -> None:
        return None


def _metric(example: dspex.Example, pred: dspex.Prediction, trace: object = None) -> bool:
    return bool(example.answer == pred.answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()

    lm = dspex.LM("openai/bench", transport=_AtOnce(), cache=False)
    base = load_task("arithmetic").examples
    devset = [base[i % len(base)].copy(id=i) for i in range(args.calls)]
    evaluate = dspex.Evaluate(
        devset=devset, metric=_metric, concurrency=args.concurrency, progress=False
    )
    evaluate(dspex.Predict("question -> answer: int", lm=lm), devset=devset[:50])  # warm up
    cpu = time.process_time()
    evaluate(dspex.Predict("question -> answer: int", lm=lm))
    cpu = time.process_time() - cpu
    print(
        f"{args.calls} calls, concurrency {args.concurrency}: "
        f"client CPU {cpu / args.calls * 1000:.3f} ms/call"
    )


if __name__ == "__main__":
    main()
