"""Predict + Evaluate throughput against the loopback simulated server at 50 ms latency.

For each concurrency (1, 8, 32, 64, 256) this evaluates ``dspex.Predict`` over N examples with
``dspex.Evaluate`` against ``python -m dspex.testing.server`` (the SimulatedLM behind an
OpenAI-compatible HTTP server, in its own process) and prints:

* calls/s,
* efficiency = ideal time / actual time, where ideal = N x latency / concurrency,
* client CPU ms per call (``time.process_time()`` of this process only: the whole dspex stack
  of adapter formatting, LM client, HTTP, parsing, pydantic validation, metric, Evaluate),
* the server process's CPU ms per call (from ``/proc``): client and server share the
  machine's cores, so a server that needs more than the cores left caps the efficiency.

With ``--repeats R`` each concurrency runs R times and the table shows the median run and
the best efficiency (the machine may be shared: CPU time, being this process's own, varies
far less than wall time). Targets (issue #17): at concurrency 256, efficiency >= 0.8 and
client CPU <= 0.2 ms per call.

It also measures ``import dspex`` time (median of 5 fresh interpreters, minus an empty one).

Usage::

    python benchmarks/lm_throughput.py                 # the table in docs/performance.md
    python benchmarks/lm_throughput.py --calls 2000 --concurrency 64
    python benchmarks/lm_throughput.py --concurrency 256 --calls 4000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import dspex
from dspex.datasets import load_task
from dspex.testing import start_server_process


def _devset(n: int) -> list[dspex.Example]:
    base = load_task("arithmetic").examples
    return [base[i % len(base)].copy(id=i) for i in range(n)]


def _metric(example: dspex.Example, pred: dspex.Prediction, trace: object = None) -> bool:
    return bool(example.answer == pred.answer)


def server_cpu_s(pid: int) -> float:
    """CPU seconds the server process has used (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(
    url: str, n: int, concurrency: int, latency: float, server_pid: int = 0
) -> dict[str, float]:
    lm = dspex.LM("openai/dspex-simulated", api_base=url, cache=False)
    program = dspex.Predict("question -> answer: int", lm=lm)
    devset = _devset(n)
    evaluate = dspex.Evaluate(
        devset=devset, metric=_metric, concurrency=concurrency, progress=False
    )
    evaluate(dspex.Predict("question -> answer: int", lm=lm), devset=devset[:concurrency])  # warm
    server0 = server_cpu_s(server_pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = evaluate(program)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server = server_cpu_s(server_pid) - server0
    if result.n_errors:
        raise SystemExit(f"{result.n_errors} errors: {result.errors[0].error}")
    ideal = n * latency / concurrency
    return {
        "concurrency": concurrency,
        "calls": n,
        "calls_per_s": n / wall,
        "efficiency": ideal / wall,
        "cpu_ms_per_call": 1000 * cpu / n,
        "server_cpu_ms_per_call": 1000 * server / n,
        "score": result.score,
    }


def import_time(repeats: int = 5) -> float:
    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t0

    empty = statistics.median(run("pass") for _ in range(repeats))
    full = statistics.median(run("import dspex") for _ in range(repeats))
    return full - empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--calls-at-1", type=int, default=200, help="N at concurrency 1")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32, 64, 256])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-import-time", action="store_true")
    args = parser.parse_args()
    if not args.no_import_time:
        print(f"import dspex: {import_time() * 1000:.0f} ms")
    print(
        f"{'conc':>4} {'calls':>6} {'calls/s':>8} {'efficiency':>10} {'best eff.':>9} "
        f"{'CPU ms/call':>11} {'best CPU':>8} {'server CPU':>10}"
    )
    with start_server_process("arithmetic", latency=args.latency) as server:
        for c in args.concurrency:
            n = args.calls_at_1 if c == 1 else args.calls
            runs = [
                run_one(server.url, n, c, args.latency, server.pid) for _ in range(args.repeats)
            ]
            r = sorted(runs, key=lambda x: x["efficiency"])[len(runs) // 2]
            best_eff = max(x["efficiency"] for x in runs)
            cpu = statistics.median(x["cpu_ms_per_call"] for x in runs)
            best_cpu = min(x["cpu_ms_per_call"] for x in runs)
            server_cpu = statistics.median(x["server_cpu_ms_per_call"] for x in runs)
            print(
                f"{c:>4} {n:>6} {r['calls_per_s']:>8.0f} {r['efficiency']:>10.2f} "
                f"{best_eff:>9.2f} {cpu:>11.3f} {best_cpu:>8.3f} {server_cpu:>10.3f}"
            )


if __name__ == "__main__":
    main()
