"""``dspex optimize``, ``dspex evaluate`` and ``dspex runs``."""

from __future__ import annotations

import argparse
import threading
import tomllib
from pathlib import Path
from typing import Any

from dspex.callbacks import Callback, Span
from dspex.cli._table import print_rich_table
from dspex.errors import UserError

__all__ = ["add_parsers", "run"]


def add_parsers(sub: Any) -> None:
    opt = sub.add_parser(
        "optimize",
        help="run an optimization flow from a TOML config",
        description="Runs the optimizer's Prefect flow in this process (or against the "
        "configured Prefect server), logs to MLflow and registers the winner. The config "
        "holds OptimizeParams: program, metric, trainset, valset, lm, optimizer, settings, "
        "budget, tracking. See docs/optimizers.md.",
    )
    opt.add_argument("config", type=Path, help="a TOML file of OptimizeParams")
    opt.add_argument("--runs-dir", default=None)
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a program or registered model from a TOML config",
        description="Runs the dspex-evaluate flow: EvaluateParams (program or "
        "'models:/NAME@ALIAS', metric, dataset, lm, tracking) from a TOML file.",
    )
    ev.add_argument("config", type=Path, help="a TOML file of EvaluateParams")
    ev.add_argument("--runs-dir", default=None)
    pro = sub.add_parser(
        "promote",
        help="optimize, then promote the winner to @champion only if it beats the champion",
        description="Runs the dspex-nightly flow once: NightlyParams (optimize = "
        "OptimizeParams, testset, promotion = model_name / margin / aliases) from a TOML "
        "file. --dry-run only says what it would do. See docs/operations.md.",
    )
    pro.add_argument("config", type=Path, help="a TOML file of NightlyParams")
    pro.add_argument("--runs-dir", default=None)
    pro.add_argument("--dry-run", action="store_true", help="no flow, no LM call: the plan")
    runs = sub.add_parser("runs", help="list recent runs with scores and costs (from MLflow)")
    runs.add_argument("--runs-dir", default=None)
    runs.add_argument("--limit", type=int, default=20)


def _params(model: Any, path: Path, runs_dir: str | None) -> Any:
    """The config file validated into ``model``; a bad field is a UserError naming it."""
    return _validate(model, _load(path, runs_dir), path)


def _validate(model: Any, data: dict[str, Any], path: Path) -> Any:
    import pydantic

    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise UserError(f"{path}: {problems}. See docs/optimizers.md for the fields.") from None
    except UserError as e:  # e.g. an unknown optimizer setting (did you mean ...?): which file
        raise type(e)(f"{path}: {e}") from None


def _load(path: Path, runs_dir: str | None) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"No config file {str(path)!r}.") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e}).") from None
    if runs_dir:
        data["runs_dir"] = runs_dir
    return data


class _Progress(Callback):
    """Counts LM calls per stage for the live display."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.hits = 0

    def on_lm_end(self, span: Span, lm: Any, request: Any, response: Any, error: Any) -> None:
        stage = str(span.labels.get("stage", "other"))
        with self.lock:
            self.calls[stage] = self.calls.get(stage, 0) + 1
            self.hits += bool(response is not None and response.cache_hit)

    def render(self) -> str:
        with self.lock:
            parts = [f"{stage}: {n}" for stage, n in sorted(self.calls.items())]
            return f"LM calls — {', '.join(parts) or 'none yet'} (cache hits {self.hits})"


def _with_progress(fn: Any, params: Any) -> dict[str, Any]:
    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    import dspex

    progress = _Progress()
    console = Console(stderr=True)
    result: dict[str, Any] = {}
    with Live(Spinner("dots", "starting"), console=console, refresh_per_second=4) as live:

        def update() -> None:
            while not done.wait(0.25):
                live.update(Spinner("dots", progress.render()))

        done = threading.Event()
        ticker = threading.Thread(target=update, daemon=True)
        ticker.start()
        try:
            with dspex.context(callbacks=[progress]):
                result = fn(params)
        finally:
            done.set()
            ticker.join()
        live.update(progress.render() + "\n")
    return result


def _print_table(title: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
    print_rich_table(cols, ([r.get(c) for c in cols] for r in rows), title=title)


def _optimize(args: argparse.Namespace) -> int:
    from dspex.flows import local
    from dspex.optimize import OptimizeParams

    params = _params(OptimizeParams, args.config, args.runs_dir)
    result = _with_progress(local.experiment, params)
    _print_table(
        "Candidates",
        result["candidates"],
        ["id", "demos", "score", "errors", "lm_calls", "cache_hits"],
    )
    print(
        f"best score: {result['score']}  MLflow run: {result['mlflow_run_id']}"
        + (f"  registered version: {result['model_version']}" if result["model_version"] else "")
        + ("  (stopped by the budget)" if result["budget_exhausted"] else "")
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dspex.flows import local
    from dspex.optimize import EvaluateParams

    params = _params(EvaluateParams, args.config, args.runs_dir)
    result = _with_progress(local.evaluate, params)
    print(
        f"score: {result['score']}% over {result['n']} examples ({result['errors']} errors); "
        f"LM calls {result['lm_calls']} ({result['cache_hits']} cached); "
        f"MLflow run {result['mlflow_run_id']}"
    )
    for err in result["first_errors"]:
        print(f"  error: {err}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from dspex.mlflow import tracking_client

    client = tracking_client(runs_dir=args.runs_dir)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = (
        client.search_runs(
            experiments, order_by=["attributes.start_time DESC"], max_results=args.limit * 20
        )
        if experiments
        else []
    )
    top_level = [r for r in found if "mlflow.parentRunId" not in r.data.tags][: args.limit]
    rows = []
    for r in top_level:
        m, t = r.data.metrics, r.data.tags
        rows.append(
            {
                "started": _time(r.info.start_time),
                "run": r.info.run_name,
                "status": r.info.status,
                "score": m.get("best_score", m.get("score")),
                "lm calls": m.get("lm_calls"),
                "cost $": m.get("lm_cost_usd", m.get("cost")),
                "kind": t.get("dspex.optimizer", t.get("dspex.kind", "")),
                "run id": r.info.run_id,
            }
        )
    _print_table(
        "Recent runs (child runs hidden)",
        rows,
        ["started", "run id", "kind", "status", "score", "lm calls", "cost $"],
    )
    return 0


def _time(ms: int | None) -> str:
    from datetime import UTC, datetime

    return "" if not ms else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _promote(args: argparse.Namespace) -> int:
    import json

    from dspex.flows import local
    from dspex.optimize import NightlyParams

    data = _load(args.config, None)
    if args.runs_dir:
        data.setdefault("optimize", {})["runs_dir"] = args.runs_dir
    params = _validate(NightlyParams, data, args.config)
    if args.dry_run:
        print(json.dumps(local.plan_promotion(params), indent=2))
        return 0
    result = _with_progress(local.nightly, params)
    print(
        f"{result['model_name']} v{result.get('version')}: {result['decision']}"
        + (f" ({result['reason']})" if result.get("reason") else "")
        + (" (nothing changed: skipped)" if result.get("skipped") else "")
    )
    return 0


def run(args: argparse.Namespace) -> int:
    commands = {"optimize": _optimize, "evaluate": _evaluate, "runs": _runs, "promote": _promote}
    return commands[args.command](args)
