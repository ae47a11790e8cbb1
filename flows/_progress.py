"""One live progress display for a flow run in this process (``optimizer.compile(...)``, the CLI).

By default a run shows one line that updates in place — the stage, trials, LM calls, tasks
done and the best score so far — instead of Prefect's INFO line per task and flow state and
MLflow's "no artifacts at artifact path" warning per registration, which are filtered from the
console. ``DSPEX_VERBOSE=1`` turns the filter and the display off: the full logs, as Prefect
and MLflow write them. Only the console is quieted: Prefect still ships every log line to its
API (the UI's flow run page), and deployments' workers never come through here.

In a terminal the line is a ``rich`` live display; in a notebook an IPython display updated in
place; elsewhere (a pipe, CI) a plain line per stage and one at the end.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dspex._settings import context, current
from dspex.callbacks import Callback, Span

__all__ = ["RunProgress", "progress", "verbose"]

VERBOSE_ENV = "DSPEX_VERBOSE"

# The console lines a quiet run drops: Prefect's per-task and per-flow state lines (and its
# hook lines), and MLflow's warning when a model is registered from a logged model.
_PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine")
_MLFLOW_REGISTRY_LOGGER = "mlflow.tracking._model_registry.fluent"
_MLFLOW_NOISE = "has no artifacts at artifact path"

_RUN_SUFFIX = re.compile(r"-[0-9a-f]{3}$")  # Prefect's "log-winner-1a2" task run names
_lock = threading.Lock()
_active: list[RunProgress] = []  # the displays of the runs in progress, innermost last


def verbose() -> bool:
    """``DSPEX_VERBOSE`` is set to a true value: full Prefect and MLflow logs, no display."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class RunProgress(Callback):
    """Counts what a run does (LM calls, evaluations, tasks) and renders it as one line."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.stage = "starting"
        self.trials: set[int] = set()
        self.lm_calls = 0
        self.cache_hits = 0
        self.tasks_done = 0
        self.best: float | None = None
        self.best_minibatch: float | None = None
        self._scored: dict[str, tuple[float, int]] = {}  # per candidate: score x n, n
        self.started = time.monotonic()
        self._lock = threading.Lock()

    # -- events --------------------------------------------------------------------------
    def _saw(self, labels: Mapping[str, Any]) -> None:
        stage, trial = labels.get("stage"), labels.get("trial")
        if stage is not None:
            self.stage = str(stage)
        if isinstance(trial, int) or (isinstance(trial, str) and trial.isdigit()):
            self.trials.add(int(trial))

    def on_lm_end(self, span: Span, lm: Any, request: Any, response: Any, error: Any) -> None:
        with self._lock:
            self.lm_calls += 1
            self.cache_hits += bool(getattr(response, "cache_hit", False))
            self._saw(span.labels)

    def on_evaluate_end(self, span: Span, evaluate: Any, result: Any, error: Any) -> None:
        score, n = getattr(result, "score", None), getattr(result, "n", None)
        if not isinstance(score, int | float) or not isinstance(n, int) or n <= 0:
            return
        with self._lock:
            self._saw(span.labels)
            # A minibatch (MIPROv2's search) is a noisy estimate: shown only until a full one.
            if span.labels.get("stage") == "search":
                self.best_minibatch = max(score, self.best_minibatch or score)
                return
            # A candidate scored in parts (a race's rungs) is scored on all of them together;
            # one only partly scored (dropped from the race) is not a best score.
            key = str(span.labels.get("candidate") or span.span_id)
            total, count = self._scored.get(key, (0.0, 0))
            self._scored[key] = (total + score * n, count + n)
            most = max(c for _, c in self._scored.values())
            self.best = max(t / c for t, c in self._scored.values() if c == most)

    def task_finished(self, task_run_name: str) -> None:
        with self._lock:
            self.tasks_done += 1
            if task_run_name:
                # Until the next LM call names its stage; without Prefect's random suffix.
                self.stage = _RUN_SUFFIX.sub("", task_run_name)

    # -- rendering -----------------------------------------------------------------------
    def line(self) -> str:
        """The display's text: ``dspex-mipro | stage search | trial 7 | ...``."""
        with self._lock:
            parts = [self.title, f"stage {self.stage}"]
            if self.trials:
                parts.append(f"trials {len(self.trials)}")
            cached = f" ({self.cache_hits} cached)" if self.cache_hits else ""
            parts.append(f"LM calls {self.lm_calls}{cached}")
            parts.append(f"tasks {self.tasks_done}")
            if self.best is not None:
                parts.append(f"best score {self.best:.1f}")
            elif self.best_minibatch is not None:
                parts.append(f"best minibatch score {self.best_minibatch:.1f}")
            parts.append(f"{time.monotonic() - self.started:.0f}s")
        return " | ".join(parts)

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self.line())  # plain: no highlighting of digits inside stage names


class _QuietConsole(logging.Filter):
    """Drops the run noise while any quiet run is in progress; tells the displays of tasks."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            displays = list(_active)
        if not displays:
            return True
        if record.name == "prefect.task_runs" and "Finished in state" in record.getMessage():
            displays[-1].task_finished(str(getattr(record, "task_run_name", "") or ""))
        if record.name.startswith(_PREFECT_RUN_LOGGERS) and record.levelno < logging.WARNING:
            return False
        return not (record.name == _MLFLOW_REGISTRY_LOGGER and _MLFLOW_NOISE in str(record.msg))


_FILTER = _QuietConsole()


def _install_filters() -> None:
    """The filter on the root's console handlers (where Prefect's run loggers propagate) and
    on MLflow's registry logger; installed once, inert when no quiet run is in progress."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    for target in (*handlers, logging.getLogger(_MLFLOW_REGISTRY_LOGGER)):
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)


@contextmanager
def progress(title: str) -> Iterator[RunProgress | None]:
    """Show one live display for the flow run inside the block and quiet the console logs
    (nothing when ``DSPEX_VERBOSE`` is set)."""
    if verbose():
        yield None
        return
    display = RunProgress(title)
    _install_filters()
    with _lock:
        _active.append(display)
    try:
        with context(callbacks=(*current().callbacks, display)), _render(display):
            yield display
    finally:
        with _lock:
            _active.remove(display)


@contextmanager
def _render(display: RunProgress) -> Iterator[None]:
    if _in_notebook():
        with _notebook(display):
            yield
        return
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal and not console.is_dumb_terminal:
        from rich.live import Live

        with Live(display, console=console, refresh_per_second=4, transient=False):
            yield
        return
    with _plain(display):
        yield


@contextmanager
def _plain(display: RunProgress) -> Iterator[None]:
    """A pipe or CI log: a line when the stage changes, and the final line."""
    shown = [""]

    def on_stage_change() -> None:
        if display.stage != shown[0]:
            shown[0] = display.stage
            print(display.line(), file=sys.stderr, flush=True)

    try:
        with _every(1.0, on_stage_change):
            yield
    finally:  # the final line, also when the run failed
        print(display.line(), file=sys.stderr, flush=True)


@contextmanager
def _every(seconds: float, tick: Callable[[], None]) -> Iterator[None]:
    """Call ``tick`` every ``seconds`` on a daemon thread while the block runs."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(seconds):
            tick()

    thread = threading.Thread(target=run, name="dspex-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    ip = get() if callable(get) else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


@contextmanager
def _notebook(display: RunProgress) -> Iterator[None]:
    """One output line in the notebook, updated in place (no ipywidgets needed)."""
    from IPython.display import Pretty
    from IPython.display import display as show

    handle = show(Pretty(display.line()), display_id=True)  # Pretty: the text, not its repr
    try:
        with _every(0.5, lambda: handle.update(Pretty(display.line()))):
            yield
    finally:
        handle.update(Pretty(display.line()))
