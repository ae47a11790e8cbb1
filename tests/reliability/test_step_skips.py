"""One bad item does not end an optimization run (issue #12): a metric raising during
bootstrapping, or an unparseable answer in MIPROv2's dataset summarizer or instruction
proposer, is tried once more, then that item is skipped and counted: a ``skipped.<step>``
MLflow metric and a line in the run's Prefect summary (the ``dspex-winner`` artifact).

Public API (``compile()``), a real Prefect server and MLflow; the LM is the ``dspex.testing``
simulator, scripted here to answer garbage to chosen prompts.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.testing import LocalTransport, Reply, SimulatedLM, Simulator, parse_prompt
from tests.flows.programs import TASK, TRAIN, exact, solver

pytestmark = pytest.mark.slow

GARBAGE = "I would rather not use your field markers."


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """What dspex's optimizer steps log (a handler of its own: Prefect reconfigures the
    root logger's handlers when a flow starts)."""

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    seen: list[str] = []
    handler, logger = Handler(logging.WARNING), logging.getLogger("dspex.optimize")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def _mlflow_metrics(run_id: str) -> dict[str, float]:
    import mlflow

    metrics: dict[str, float] = mlflow.tracking.MlflowClient().get_run(run_id).data.metrics
    return metrics


def _summary_artifact() -> str:
    """The markdown of the latest run summary the flows publish to Prefect."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dspex-winner"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return str(artifact.data)


# ----- a metric raising during bootstrapping ----------------------------------------------


def test_a_metric_raising_during_bootstrapping_is_retried_then_the_example_skipped(
    tmp_path: Path, prefect_server: None, warnings: list[str]
) -> None:
    broken, flaky = TRAIN[1].question, TRAIN[2].question
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def metric(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> bool:
        with lock:
            calls[example.question] += 1
            n = calls[example.question]
        if example.question == broken or (example.question == flaky and n == 1):
            raise ConnectionError("the grading service hung up")
        return exact(example, prediction, trace)

    lm = SimulatedLM(task=TASK, cache=False)
    opt = dspex.BootstrapFewShot(metric, max_bootstrapped_demos=6, max_labeled_demos=6)
    opt.compile(solver(), trainset=TRAIN[:6], lm=lm, runs_dir=tmp_path / "runs")

    result = opt.last_result
    assert result is not None  # the run finished
    assert calls[broken] == 2 and calls[flaky] == 2  # each was called once more
    assert all(calls[ex.question] == 1 for ex in TRAIN[:6] if ex.question not in (broken, flaky))
    assert lm.request_count == 6  # the retry calls the metric again, not the program
    assert _mlflow_metrics(str(result.mlflow_run_id))["skipped.bootstrap"] == 1
    assert "`skipped.bootstrap` = 1" in _summary_artifact()
    assert any("row 1: the metric raised ConnectionError twice" in m for m in warnings)


# ----- unparseable answers in MIPROv2's summarizer and proposer ---------------------------


class _Garbling:
    """The simulator, except that requests ``garble`` picks get an answer without fields."""

    latency = 0.0

    def __init__(self, garble: Callable[[str, str], bool]) -> None:
        self.inner = Simulator(TASK)
        self.garble = garble
        self.seen: list[tuple[str, str]] = []  # (output fields, rollout id) per request
        self._lock = threading.Lock()

    @property
    def request_count(self) -> int:
        return len(self.seen)

    def reply(self, request: Any) -> Reply:
        fields = ",".join(
            f.name for f in parse_prompt(request.messages, request.kwargs).output_fields
        )
        rollout = str(request.rollout_id or "")
        with self._lock:
            self.seen.append((fields, rollout))
        if self.garble(fields, rollout):
            return Reply((GARBAGE,), 50, 10, ("stop",))
        return self.inner.reply(request)

    def tries(self, fields: str, rollout: str = "") -> tuple[int, int]:
        """Requests for ``fields`` (whose rollout id holds ``rollout``): first try, retry."""
        mine = [r for f, r in self.seen if f == fields and rollout in r]
        retried = sum("retry" in r for r in mine)
        return len(mine) - retried, retried


def _garbled(fields: str, rollout: str) -> bool:
    if fields == "summary":  # every try: the summary is skipped
        return True
    if fields == "proposed_instruction":
        # Proposal 1: every try, skipped. Proposal 2: its first try only, saved by the retry.
        return "propose-1" in rollout or ("propose-2" in rollout and "retry" not in rollout)
    return False


def test_unparseable_summary_and_proposals_are_retried_once_then_skipped(
    tmp_path: Path, prefect_server: None
) -> None:
    responder = _Garbling(_garbled)
    lm = dspex.LM("dspex-sim/garbling", transport=LocalTransport(responder), cache=False)
    opt = dspex.MIPROv2(
        exact,
        auto=None,
        num_candidates=3,  # two proposals
        num_trials=2,
        minibatch_size=5,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        seed=0,
    )
    opt.compile(solver(), trainset=TRAIN[:8], valset=TRAIN[8:16], lm=lm, runs_dir=tmp_path)

    result = opt.last_result
    assert result is not None  # the run finished
    first, retried = responder.tries("summary")
    assert first > 0 and retried == first  # asked again, the same way: then skipped
    first, retried = responder.tries("proposed_instruction", "propose-1")
    assert first > 0 and retried == first
    first, retried = responder.tries("proposed_instruction", "propose-2")
    assert first > 1 and retried == 1  # the retry's first answer parsed
    metrics = _mlflow_metrics(str(result.mlflow_run_id))
    assert metrics["skipped.summarizer"] == 1
    assert metrics["skipped.proposer"] == 1  # proposal 2 was saved by its retry
    assert metrics["skipped.bootstrap"] == 0
    summary = _summary_artifact()
    for line in ("`skipped.summarizer` = 1", "`skipped.proposer` = 1", "`skipped.bootstrap` = 0"):
        assert line in summary
    assert any("predict.instruction=" in str(c.get("config")) for c in result.candidates)
