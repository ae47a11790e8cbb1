"""With ``dspex.mlflow.autolog()`` on, an optimization flow's calls become MLflow traces of its
run: a sample of them, linked to the run, in its experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

import dspex
import dspex.mlflow
from dspex.testing import SimulatedLM
from tests.flows.programs import TASK, TRAIN, exact, solver

pytestmark = pytest.mark.slow


def test_a_compile_links_a_sample_of_its_calls_to_its_run(tmp_path: Path) -> None:
    import mlflow

    runs = tmp_path / "runs"
    dspex.mlflow.autolog(
        tracking_uri=dspex.mlflow.embedded_tracking_uri(runs), compile_trace_sample=3
    )
    try:
        opt = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=2, max_labeled_demos=2)
        opt.compile(solver(), trainset=TRAIN[:6], lm=SimulatedLM(task=TASK), runs_dir=runs)
    finally:
        dspex.mlflow.autolog(disable=True)
    assert opt.last_result is not None
    run_id = opt.last_result.mlflow_run_id
    run = mlflow.MlflowClient().get_run(run_id)
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(
        locations=[run.info.experiment_id], run_id=run_id, return_type="list"
    )
    assert len(traces) == 3  # the sample, not every call of the run
    for trace in traces:
        assert trace.info.trace_metadata["mlflow.sourceRun"] == run_id
        types = {s.span_type for s in trace.data.spans}
        assert {"CHAIN", "CHAT_MODEL"} <= types
    # Every call is still a row of the run's parquet traces.
    rows = dspex.traces.sql(
        "SELECT count(*) AS n FROM traces WHERE run_id = ? AND kind = 'lm'",
        runs_dir=runs,
        params=[run_id],
    ).to_pylist()
    assert rows[0]["n"] >= 3
