"""The trace recorder's overhead on the Evaluate throughput benchmark.

Runs ``benchmarks/lm_throughput.py``'s measurement (Predict + Evaluate, 1,000 calls at
concurrency 64, loopback simulated server at 50 ms) alternately without and with
``dspex.traces.record(...)``, several times each, and prints the medians: calls/s, client
CPU ms per call, and the throughput overhead (target <= 5%).

Usage::

    python benchmarks/trace_overhead.py [--repeats 5] [--calls 1000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lm_throughput import run_one

import dspex
from dspex.testing import start_server_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    runs = Path(tempfile.mkdtemp(prefix="dspex-trace-bench-"))
    with start_server_process("arithmetic", latency=args.latency) as server:
        for i in range(args.repeats):
            results["off"].append(run_one(server.url, args.calls, args.concurrency, args.latency))
            with dspex.traces.record(run_id=f"bench-{i}", runs_dir=runs):
                results["on"].append(
                    run_one(server.url, args.calls, args.concurrency, args.latency)
                )
    rows = dspex.traces.sql("SELECT count(*) AS n FROM traces", runs).to_pylist()[0]["n"]
    med = {
        mode: {k: statistics.median(r[k] for r in rs) for k in ("calls_per_s", "cpu_ms_per_call")}
        for mode, rs in results.items()
    }
    overhead = 1 - med["on"]["calls_per_s"] / med["off"]["calls_per_s"]
    print(f"{'traces':>7} {'calls/s':>8} {'CPU ms/call':>11}")
    for mode in ("off", "on"):
        print(f"{mode:>7} {med[mode]['calls_per_s']:>8.0f} {med[mode]['cpu_ms_per_call']:>11.2f}")
    print(f"throughput overhead: {overhead * 100:.1f}% ({rows} trace rows written)")


if __name__ == "__main__":
    main()
