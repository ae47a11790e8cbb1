"""An exception that quotes a secret leaves no trace of it (issue #12): not in Prefect's
state messages, logs or result files, not in Python logging or the terminal, not in MLflow,
not in what ``compile()`` raises. It is scrubbed with the scrubber traces use, the moment it
leaves a dspex task or flow.

The secret is an API key registered the way dspex registers every secret: by building an LM
with it. Public API (``compile()``), a real Prefect server and MLflow on SQLite under the
test's directory; the LM is the ``dspex.testing`` stand-in.
"""

from __future__ import annotations

import logging
import sqlite3
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.testing import SimulatedLM
from tests.flows.programs import TASK, TRAIN, exact, solver

# Not shaped like a provider key: only its registration can redact it.
SECRET = "grader-key-SENTINEL-8c41d07e"


class _Records:
    """Every record any logger handles, formatted with its traceback. Recorded in
    ``Logger.handle``: Prefect reconfigures logging's handlers while a flow starts."""

    def __init__(self) -> None:
        self.formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self.lines: list[str] = []

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> _Records:
    records = _Records()
    handle = logging.Logger.handle

    def recording(self: logging.Logger, record: logging.LogRecord) -> None:
        records.lines.append(records.formatter.format(record))
        handle(self, record)

    monkeypatch.setattr(logging.Logger, "handle", recording)
    return records


def _flush_prefect() -> None:
    """Logs and events reach Prefect's API in batches: send what is queued."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)


def _prefect_db_text() -> str:
    """Prefect's database (state messages, logs, artifacts, events), read as SQL rows."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    path = PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(str(db.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    finally:
        db.close()


def _files_holding(root: Path, text: str) -> list[str]:
    """Files under ``root`` holding ``text``: raw bytes, and Parquet (compressed) decoded."""
    import pyarrow.parquet as pq

    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        decoded = str(pq.read_table(path).to_pylist()) if path.suffix == ".parquet" else ""
        if text.encode() in path.read_bytes() or text in decoded:
            found.append(str(path))
    return found


def _sweep(tmp_path: Path, logs: _Records, terminal: str) -> tuple[str, str]:
    """Assert that the secret is nowhere; return Prefect's database and the logs as text,
    for the caller to check that the error itself did get there."""
    _flush_prefect()
    prefect_db = _prefect_db_text()
    assert SECRET not in prefect_db, "a Prefect state message, log or event holds the secret"
    runs = tmp_path / "runs"
    assert (runs / "mlflow.db").is_file() and (runs / "prefect-results").is_dir()
    assert not _files_holding(tmp_path, SECRET), "a result file, MLflow or a trace holds it"
    assert SECRET not in logs.text() and SECRET not in terminal
    return prefect_db, logs.text()


class _Raises(dspex.Module):
    """A program whose tool fails with an error quoting the key."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.qa = dspex.ChainOfThought("question -> answer: int")
        self.marker = marker

    def forward(self, question: str) -> dspex.Prediction:
        self.qa(question=question)
        raise RuntimeError(f"{self.marker}: calculator refused key {SECRET}")


def _metric_raising(marker: str) -> Any:
    def metric(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> bool:
        grader_keys: dict[str, str] = {}
        return bool(grader_keys[f"{marker} {SECRET}"])  # a KeyError quoting the key

    return metric


@pytest.mark.slow
@pytest.mark.parametrize("raiser", ["metric", "program"])
def test_an_error_that_ends_the_run_carries_no_secret_anywhere(
    raiser: str,
    tmp_path: Path,
    prefect_server: None,
    logs: _Records,
    capfd: pytest.CaptureFixture[str],
) -> None:
    marker = f"failure-{uuid.uuid4().hex[:8]}"
    lm = SimulatedLM(task=TASK, api_key=SECRET)  # registers the key, as every LM does
    program = _Raises(marker) if raiser == "program" else solver()
    metric = _metric_raising(marker) if raiser == "metric" else exact
    # max_errors=1: the first failure ends the run (the default, as DSPy's, skips up to 10).
    opt = dspex.BootstrapFewShot(
        metric, max_bootstrapped_demos=2, max_labeled_demos=2, max_errors=1
    )

    # A metric's KeyError stops the run as a MetricError caused by it (a programming error).
    raised = dspex.errors.MetricError if raiser == "metric" else RuntimeError
    with pytest.raises(raised) as info:
        opt.compile(program, trainset=TRAIN[:4], lm=lm, runs_dir=tmp_path / "runs")

    # The error keeps its type (callers' except clauses still match) and loses the secret,
    # in its own text and in the exceptions it chains to.
    shown = "".join(traceback.format_exception(info.value))
    assert marker in shown and "[REDACTED]" in shown and SECRET not in shown
    out, err = capfd.readouterr()
    prefect_db, logged = _sweep(tmp_path, logs, out + err)
    assert marker in prefect_db, "the error never reached Prefect's state messages and logs"
    assert marker in logged


@pytest.mark.slow
def test_the_errors_a_finished_run_records_carry_no_secret(
    tmp_path: Path, prefect_server: None, logs: _Records, capfd: pytest.CaptureFixture[str]
) -> None:
    """A metric that fails on every example: bootstrapping skips them, the evaluation
    records the error per row, and the run finishes; what it recorded is redacted."""
    marker = f"recorded-{uuid.uuid4().hex[:8]}"
    lm = SimulatedLM(task=TASK, api_key=SECRET)

    def metric(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> bool:
        raise RuntimeError(f"{marker}: grader refused key {SECRET}")

    opt = dspex.BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=2)
    opt.compile(solver(), trainset=TRAIN[:4], valset=TRAIN[4:8], lm=lm, runs_dir=tmp_path / "runs")

    assert opt.last_result is not None
    (row,) = opt.last_result.candidates
    assert marker in row["first_error"] and "[REDACTED]" in row["first_error"]
    out, err = capfd.readouterr()
    _, logged = _sweep(tmp_path, logs, out + err)
    assert marker in logged  # the bootstrap's skip warnings
    assert _files_holding(tmp_path / "runs" / "mlartifacts", marker)  # candidates.json


# ----- the scrubber, on exceptions of every shape -------------------------------------------


class _OwnStr(Exception):
    def __init__(self, key: str) -> None:
        super().__init__("quiet")
        self.key = key

    def __str__(self) -> str:
        return f"auth failed for {self.key}"


def _raised_in(block: Any, exc: BaseException) -> BaseException:
    from dspex._redact import redacted_errors

    with pytest.raises(BaseException) as info, redacted_errors():
        block(exc)
    return info.value


def _raise(exc: BaseException) -> None:
    raise exc


def test_the_scrubber_keeps_the_type_and_cleans_chains_notes_and_groups() -> None:
    SimulatedLM(task=TASK, api_key=SECRET)  # registers the key
    inner = ConnectionError(f"refused {SECRET}")
    outer = RuntimeError(f"grading failed with {SECRET}")
    outer.__cause__ = inner
    outer.add_note(f"key was {SECRET}")
    group = ExceptionGroup("graders", [ValueError(f"bad {SECRET}"), KeyError(SECRET)])
    for exc in (outer, group):
        raised = _raised_in(_raise, exc)
        assert raised is exc  # scrubbed in place: same object, same type
        shown = "".join(traceback.format_exception(raised))
        assert SECRET not in shown and "[REDACTED]" in shown


def test_an_exception_whose_text_is_not_its_args_is_replaced_by_a_dspex_error() -> None:
    SimulatedLM(task=TASK, api_key=SECRET)
    for exc in (_OwnStr(SECRET), FileNotFoundError(2, "No such file", f"/keys/{SECRET}")):
        raised = _raised_in(_raise, exc)
        assert isinstance(raised, dspex.errors.DspexError)
        shown = "".join(traceback.format_exception(raised))
        assert type(exc).__name__ in str(raised) and SECRET not in shown
    plain = OSError("disk full")  # nothing to scrub: left as it is
    assert _raised_in(_raise, plain) is plain


def test_a_dataset_task_failing_with_a_secret_in_its_message_fails_without_it(
    tmp_path: Path, prefect_server: None
) -> None:
    """Tasks outside a run context (dataset loading, registry and promotion steps) scrub what
    they raise too: a path that happens to hold the key stays out of the task's state."""
    from prefect import flow

    from dspex.optimize import DatasetSpec
    from dspex.tasks.data import load_dataset

    SimulatedLM(task=TASK, api_key=SECRET)  # registers the key
    spec = DatasetSpec(path=str(tmp_path / SECRET / "rows.jsonl"), input_keys=["question"])

    @flow(name=f"load-{uuid.uuid4().hex[:8]}")
    def load() -> Any:
        return load_dataset(spec, "trainset", return_state=True)

    state = load(return_state=True)  # the flow fails with its task
    assert state.is_failed()
    _flush_prefect()
    db = _prefect_db_text()
    assert "[REDACTED]/rows.jsonl" in db  # the task's error did reach Prefect, scrubbed
    assert SECRET not in db
