"""Local runs after faults: a tampered persisted result never runs code, and a killed
``compile()`` leaves no flow run ``Running`` for ever."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import dspex
from dspex.testing import SimulatedLM, start_server_process
from tests.flows.programs import TASK, TRAIN, exact, solver

REPO = Path(__file__).parents[2]


class _Payload:
    """Unpickling this creates ``path``: the code a tampered result file would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _tamper(record_path: Path, sentinel: Path) -> None:
    """Rewrite a persisted result in Prefect's record layout, as a cloudpickle payload."""
    from prefect.serializers import PickleSerializer

    record = json.loads(record_path.read_bytes())
    serializer = PickleSerializer(picklelib="cloudpickle")
    record["metadata"]["serializer"] = serializer.model_dump(mode="json")
    record["result"] = serializer.dumps(_Payload(sentinel)).decode()
    record_path.write_text(json.dumps(record))


def _compile(runs: Path) -> dspex.Module:
    opt = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=2, max_labeled_demos=2)
    return opt.compile(solver(), trainset=TRAIN[:6], lm=SimulatedLM(task=TASK), runs_dir=runs)


@pytest.mark.slow
def test_a_pickled_result_file_never_runs_and_the_task_recomputes(
    tmp_path: Path, prefect_server: None
) -> None:
    runs = tmp_path / "runs"
    first = _compile(runs)
    results = runs / "prefect-results"
    files = sorted(p for p in results.iterdir() if p.is_file())
    assert files, "the run persisted its task results"
    sentinel = tmp_path / "pwned"
    for path in files:
        _tamper(path, sentinel)

    warnings = _Records()
    logger = logging.getLogger("dspex.flows")
    logger.addHandler(warnings)
    try:
        again = _compile(runs)
    finally:
        logger.removeHandler(warnings)

    assert not sentinel.exists(), "a tampered result file ran code"
    assert again.dump_state() == first.dump_state()  # recomputed, same result
    assert any(str(files[0]) in r.getMessage() for r in warnings.records)
    assert results.stat().st_mode & 0o777 == 0o700
    for path in files:  # rewritten as JSON records by the recomputing task
        assert json.loads(path.read_bytes())["metadata"]["serializer"]["type"] == "json"


@pytest.mark.parametrize(
    ("serializer", "result"),
    [
        ({"object_decoder": "builtins.print"}, "{}"),
        ({"jsonlib": "antigravity"}, "{}"),
        ({}, json.dumps({"__class__": "os.system", "data": "touch pwned"})),
        ({}, json.dumps([{"__exc_type__": "subprocess.CalledProcessError", "message": ""}])),
        ({}, "not json"),
    ],
)
def test_json_records_that_import_names_they_choose_are_refused(
    serializer: dict[str, Any], result: str
) -> None:
    from prefect.serializers import JSONSerializer

    from dspex.flows._results import check_record

    settings = {**JSONSerializer().model_dump(mode="json"), **serializer}
    record = {"metadata": {"serializer": settings}, "result": result}
    assert check_record(json.dumps(record).encode()) is not None
    plain = {"metadata": {"serializer": JSONSerializer().model_dump(mode="json")}, "result": "{}"}
    assert check_record(json.dumps(plain).encode()) is None


def test_the_results_folder_is_made_owner_only(tmp_path: Path) -> None:
    from dspex.flows.local import local_settings
    from dspex.optimize import EvaluateParams

    results = tmp_path / "runs" / "prefect-results"
    results.mkdir(parents=True, mode=0o755)
    params = EvaluateParams.model_validate(
        {
            "program": "tests.flows.programs:solver",
            "dataset": {"task": "arithmetic"},
            "runs_dir": str(tmp_path / "runs"),
        }
    )
    with local_settings(params):
        assert results.stat().st_mode & 0o777 == 0o700


def test_only_this_hosts_dead_processes_runs_are_crashed(
    tmp_path: Path, prefect_server: None
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from dspex.flows._stale import crash_stale_runs, this_process

    @flow(name="dspex-stale-probe")
    def probe() -> None:
        pass

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = this_process()
    cases = {
        "dead here": {**me, "pid": dead.pid, "started": None},
        "dead elsewhere": {**me, "pid": dead.pid, "host": socket.gethostname() + "-other"},
        "alive here": me,
        "pid reused": {**me, "started": "0"},
    }
    folder = tmp_path / "local-runs"
    folder.mkdir()
    ids: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        for case, record in cases.items():
            run = client.create_flow_run(probe, state=Running())
            ids[case] = run.id
            (folder / f"{run.id}.json").write_text(
                json.dumps({"flow_run_id": str(run.id), **record})
            )

        assert set(crash_stale_runs(tmp_path)) == {ids["dead here"], ids["pid reused"]}
        states = {case: client.read_flow_run(i).state for case, i in ids.items()}
    assert {c: s.type.value for c, s in states.items() if s is not None} == {
        "dead here": "CRASHED",
        "dead elsewhere": "RUNNING",
        "alive here": "RUNNING",
        "pid reused": "CRASHED",
    }
    # Records of judged runs are gone; the others wait for their own host or process.
    assert sorted(p.stem for p in folder.iterdir()) == sorted(
        str(ids[c]) for c in ("dead elsewhere", "alive here")
    )


SCRIPT = textwrap.dedent(
    """
    import sys
    import dspex
    from dspex.evaluate import exact_match
    from tests.flows.programs import SMALL_DEV, SMALL_TRAIN, solver

    url, killed = sys.argv[1], sys.argv[2:]
    lm = dspex.LM("openai/sim", api_base=url)
    opt = dspex.BootstrapFewShotWithRandomSearch(
        exact_match, num_candidate_programs=1, max_bootstrapped_demos=2, max_labeled_demos=2
    )
    opt.compile(solver(), trainset=SMALL_TRAIN, valset=SMALL_DEV, lm=lm, concurrency=2)
    if killed:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings
        from dspex.flows.local import local_server

        # The local API server compile() used, on the same database: no second one to start.
        with temporary_settings({PREFECT_API_URL: local_server().wait_ready()}):
            with get_client(sync_client=True) as client:
                for run in client.read_flow_runs():
                    print("STATE", run.id, run.state.type.value, flush=True)
    """
)


def _start(url: str, home: Path, *killed: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREFECT_HOME": str(home / "prefect"),
        "DSPEX_RUNS_DIR": str(home / "runs"),
        "DSPEX_CACHE_DIR": str(home / "cache"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)  # Prefect's local mode, as in a notebook
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, url, *killed],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_local_run_is_marked_crashed_on_the_next_start(tmp_path: Path) -> None:
    # A small compile (4 candidates on 20 examples) whose LM calls take long enough that the
    # run is still going a second after it started: ~80 calls x 0.1 s / 2 at a time.
    with start_server_process("arithmetic", latency=0.1) as server:
        proc = _start(server.url, tmp_path)
        records = tmp_path / "runs" / "local-runs"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if records.is_dir() and any(records.iterdir()):
                break
            time.sleep(0.05)
        time.sleep(1.0)  # well inside the flow
        assert proc.poll() is None, "the kill must land mid-run"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        (killed,) = [p.stem for p in records.iterdir()]

        again = _start(server.url, tmp_path, killed)
        out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out[-3000:]
    states = dict(line.split()[1:] for line in out.splitlines() if line.startswith("STATE "))
    assert states.pop(killed) == "CRASHED"
    assert list(states.values()) == ["COMPLETED"]
    assert not any(records.iterdir())
