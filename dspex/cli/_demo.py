"""``dspex demo``: the README's main job — the whole spine on a bundled task.

Baseline score → BootstrapFewShotWithRandomSearch as a Prefect flow (MLflow run, traces,
registered model) → optimized score on held-out examples → the registered model loaded back
by alias, answering one question → where to look next. By default the LM is dspex's
simulated model reached through litellm (``dspex-sim/<task>``), so it runs offline and the
registered model loads in any process; ``--lm`` points it at a real provider.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import dspex
from dspex._paths import runs_dir
from dspex.cli._table import print_rich_table
from dspex.datasets import SimTask, load_task, task_names
from dspex.errors import UserError
from dspex.evaluate import exact_match

__all__ = ["run_demo"]


def _signature(task: SimTask) -> str:
    answer_type = "int" if task.answer_type == "int" else "str"
    return f"{', '.join(task.input_keys)} -> {task.answer_key}: {answer_type}"


def _print_candidates(candidates: list[dict[str, Any]], best: str) -> None:
    cols = ("candidate", "demos", "score %", "LM calls", "cache hits")
    rows = (
        (
            f"[bold]{c['id']} *[/bold]" if c["id"] == best else c["id"],
            c.get("demos", 0),
            "-" if c.get("score") is None else f"{c['score']:.1f}",
            c.get("lm_calls", "-"),
            c.get("cache_hits", "-"),
        )
        for c in candidates
    )
    title = "Candidates (scored on the validation set)"
    print_rich_table(cols, rows, title=title, right=cols[1:])


def run_demo(args: argparse.Namespace) -> int:
    if args.task not in task_names():
        raise UserError(f"Unknown task {args.task!r}; bundled tasks: {task_names()}.")
    task = load_task(args.task)
    train, val, test = task.split(train=40, dev=args.dev_size, test=args.dev_size, seed=0)
    runs = runs_dir(args.runs_dir)
    model_name = f"dspex-demo-{task.name}"
    lm = dspex.LM(args.lm or f"dspex-sim/{task.name}")
    program = dspex.ChainOfThought(_signature(task))
    evaluate = dspex.Evaluate(
        devset=test, metric=exact_match, concurrency=args.concurrency, progress=False
    )
    print(
        f"Task '{task.name}': {len(train)} train, {len(val)} validation, {len(test)} test "
        f"examples; LM {lm.model}; runs directory {runs}"
    )

    with dspex.context(lm=lm):
        baseline = evaluate(program)
    print(f"1. Baseline ChainOfThought, zero-shot: {baseline.score:.1f}% on the test set")

    started = time.perf_counter()
    optimizer = dspex.BootstrapFewShotWithRandomSearch(
        exact_match,
        num_candidate_programs=args.candidates,
        max_bootstrapped_demos=4,
        max_labeled_demos=4,
    )
    optimized = optimizer.compile(
        program,
        trainset=train,
        valset=val,
        lm=lm,
        concurrency=args.concurrency,
        runs_dir=runs,
        tracking={"experiment": "dspex-demo", "model_name": model_name, "alias": "champion"},
    )
    result = optimizer.last_result
    if result is None:  # pragma: no cover - compile always sets it
        raise UserError("The optimization produced no result.")
    print(
        f"2. BootstrapFewShotWithRandomSearch (a Prefect flow) took "
        f"{time.perf_counter() - started:.1f}s"
    )
    best = max(
        (c for c in result.candidates if c.get("score") is not None), key=lambda c: c["score"]
    )
    _print_candidates(result.candidates, best["id"])

    with dspex.context(lm=lm):
        final = evaluate(optimized)
    print(
        f"3. Optimized program: {final.score:.1f}% on the test set (baseline {baseline.score:.1f}%)"
    )

    uri = f"models:/{model_name}@champion"
    served = dspex.mlflow.load_model(uri)
    example = test[0]
    answer = served(**example.inputs().to_dict())
    print(
        f"4. Loaded {uri} (version {result.model_version}) and asked: "
        f"{example[task.input_keys[0]]!r}\n   -> {answer[task.answer_key]!r} "
        f"(expected {example[task.answer_key]!r})"
    )
    print(
        "5. Where to look:\n"
        f"   MLflow UI:  mlflow ui --backend-store-uri sqlite:///{runs / 'mlflow.db'}"
        f"  (run {result.mlflow_run_id})\n"
        "   Prefect UI: prefect server start   (flow 'dspex-optimize'; start it before "
        "running to keep the history)\n"
        f"   Traces:     dspex traces report cost --runs-dir {runs} --run-id "
        f"{result.mlflow_run_id}"
    )
    return 0
