"""``dspex demo``: the README's main job.

Evaluates a few programs on a bundled task and prints a score table. By default the LM is the
simulated model behind a loopback OpenAI-compatible server (real HTTP, offline); ``--lm``
points the same programs at a real provider.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dspex
from dspex.datasets import SimTask, load_task, task_names
from dspex.errors import UserError

__all__ = ["run_demo"]


@dataclass(frozen=True)
class _Row:
    name: str
    score: float
    errors: int
    calls: int
    cache_hits: int
    tokens: int
    seconds: float


def _signature(task: SimTask) -> type[dspex.Signature]:
    answer_type = "int" if task.answer_type == "int" else "str"
    return dspex.Signature(f"{', '.join(task.input_keys)} -> {task.answer_key}: {answer_type}")


def _programs(task: SimTask, train: list[dspex.Example]) -> list[tuple[str, dspex.Module]]:
    sig = _signature(task)
    hinted = next(i for i in task.instruction_pool if task.has_hint(i))
    demos = train[:4]
    with_demos = dspex.ChainOfThought(sig.with_instructions(hinted))
    with_demos.predict.demos = [d.copy(reasoning="(see the question)") for d in demos]
    return [
        ("Predict, zero-shot", dspex.Predict(sig)),
        ("ChainOfThought", dspex.ChainOfThought(sig)),
        ("Predict, better instruction", dspex.Predict(sig.with_instructions(hinted))),
        ("ChainOfThought + instruction + 4 demos", with_demos),
    ]


@contextlib.contextmanager
def _lm(args: argparse.Namespace, task: SimTask) -> Iterator[tuple[dspex.LM, str]]:
    if args.lm:
        yield dspex.LM(args.lm), args.lm
        return
    from dspex.testing import start_server_process

    with start_server_process(task.name, latency=args.latency) as server:
        # The lean OpenAI-compatible path, over real HTTP, exactly as for a hosted model.
        yield (
            dspex.LM("openai/dspex-simulated", api_base=server.url, cache=False),
            f"simulated LM at {server.url} ({args.latency * 1000:.0f} ms latency)",
        )


def _evaluate(name: str, program: dspex.Module, evaluate: dspex.Evaluate) -> _Row:
    started = time.perf_counter()
    result = evaluate(program)
    u = result.usage
    return _Row(
        name=name,
        score=result.score,
        errors=result.n_errors,
        calls=u.calls,
        cache_hits=u.cache_hits,
        tokens=u.total_tokens,
        seconds=time.perf_counter() - started,
    )


def _print_table(rows: list[_Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("program", "score %", "errors", "LM calls", "tokens", "seconds"):
        table.add_column(col, justify="left" if col == "program" else "right")
    for r in rows:
        table.add_row(
            r.name, f"{r.score:.1f}", str(r.errors), str(r.calls), str(r.tokens), f"{r.seconds:.2f}"
        )
    Console().print(table)


def run_demo(args: argparse.Namespace) -> int:
    if args.task not in task_names():
        raise UserError(f"Unknown task {args.task!r}; bundled tasks: {task_names()}.")
    task = load_task(args.task)
    splits = task.split(train=50, dev=args.dev_size, seed=0)

    def metric(example: dspex.Example, pred: dspex.Prediction, trace: Any = None) -> bool:
        return bool(example[task.answer_key] == pred[task.answer_key])

    evaluate = dspex.Evaluate(
        devset=splits.dev, metric=metric, concurrency=args.concurrency, progress=False
    )
    with _lm(args, task) as (lm, where), dspex.context(lm=lm):
        print(f"Evaluating on {len(splits.dev)} '{task.name}' examples against {where}")
        rows = [_evaluate(name, p, evaluate) for name, p in _programs(task, splits.train)]
    _print_table(rows, f"dspex demo: {task.name}")
    best = max(rows, key=lambda r: r.score)
    print(
        f"Best: {best.name} ({best.score:.1f}%). Better instructions, demos and reasoning "
        "each raise the score; an optimizer finds them for you (see docs/)."
    )
    return 0
