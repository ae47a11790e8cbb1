"""The shared Optuna study of MIPROv2's search: locks, slots, orphans — on a real SQLite
study, with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from dspex.flows import _study
from dspex.flows._locks import engine_for, file_lock
from dspex.flows._study import SharedStudy, lock, sqlite_storage

REPO = Path(__file__).parents[2]
SPACE = {"qa.instruction": CategoricalDistribution([0, 1, 2])}

# Appends "<" then ">" under the lock, many times: an interleaving shows the lock failed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from dspex.flows._study import lock

    storage, log = sys.argv[1], sys.argv[2]
    for _ in range(30):
        with lock(storage):
            with open(log, "a") as f:
                f.write("<")
            time.sleep(0.01)
            with open(log, "a") as f:
                f.write(">")
    """
)


def test_the_study_lock_excludes_other_processes(tmp_path: Path) -> None:
    storage = sqlite_storage(tmp_path, "run")
    log = tmp_path / "log.txt"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, storage, str(log)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(3)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert log.read_text() == "<>" * 90


def test_a_file_lock_waits_for_its_holder_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "open-run.lock"
    code = "import sys, time\nfrom dspex.flows._locks import file_lock\n"
    code += "from pathlib import Path\nwith file_lock(Path(sys.argv[1])):\n"
    code += "    print('held', flush=True)\n    time.sleep(1.0)\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    with file_lock(path):
        waited = time.monotonic() - start
    assert holder.wait(timeout=60) == 0
    assert waited > 0.3


def test_one_engine_per_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert engine_for(url) is engine_for(url)
    assert engine_for(url) is not engine_for(f"sqlite:///{tmp_path / 'b.db'}")


def test_reopening_a_study_reuses_its_storage(tmp_path: Path) -> None:
    storage = sqlite_storage(tmp_path, "run")
    SharedStudy(storage, "s", seed=0)
    cached = _study._rdb.cache_info().currsize
    SharedStudy(storage, "s", seed=0)
    assert _study._rdb.cache_info().currsize == cached
    with lock(storage), lock("mysql://elsewhere/db"):  # other databases: best effort
        pass


def test_slots_are_reserved_once_and_told(tmp_path: Path) -> None:
    storage = sqlite_storage(tmp_path, "run")
    study = SharedStudy(storage, "s", seed=0)
    first = study.reserve(2, 5, 0, SPACE)
    other_worker = SharedStudy(storage, "s", seed=0)  # sees the first one's reservations
    second = other_worker.reserve(2, 5, 0, SPACE)
    assert [t.user_attrs["index"] for t in first + second] == [0, 1, 2, 3]
    study.tell(first[0], {"score": 80.0, "error": None})
    study.tell(first[1], {"score": None, "error": "tool is down"})
    study.tell(second[0], None)  # stopped by the budget: stays running
    outcomes = other_worker.outcomes()
    assert sorted(outcomes) == [0, 1]
    assert outcomes[0].score == 80.0 and outcomes[0].config == first[0].params
    assert outcomes[1].score is None and outcomes[1].error == "tool is down"
    assert [t.user_attrs["index"] for t in study.reserve(4, 5, 0, SPACE)] == [4]
    assert study.reserve(4, 5, 0, SPACE) == []  # every slot taken


def test_a_dead_workers_trials_are_failed_and_their_slots_taken_again(tmp_path: Path) -> None:
    storage = sqlite_storage(tmp_path, "run")
    study = SharedStudy(storage, "s", seed=0)
    (orphan,) = study.reserve(1, 3, 0, SPACE)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    orphan.set_user_attr("worker", f"{_study.socket.gethostname()}:{dead}")
    resumed = SharedStudy(storage, "s", seed=0)  # fails the orphan on open
    (again,) = resumed.reserve(1, 3, 0, SPACE)
    assert again.user_attrs["index"] == 0
    assert again.params == orphan.params  # the slot's suggestion depends only on its index
    states = {t.number: t.state for t in resumed.study.get_trials(deepcopy=False)}
    assert states[orphan.number] == TrialState.FAIL
    assert resumed.finished() == {}  # a stale trial is no finished slot


def test_progress_attributes_and_the_finish_claim(tmp_path: Path) -> None:
    study = SharedStudy(sqlite_storage(tmp_path, "run"), "s", seed=0)
    study.record_full(0, "qa.demos=0,qa.instruction=0", 60.0)  # checkpoint 0: no checkpoint
    study.record_full(4, "qa.demos=1,qa.instruction=2", 70.0)
    study.record_checkpoint(8, "")
    assert study.full_scores() == {
        "qa.demos=0,qa.instruction=0": 60.0,
        "qa.demos=1,qa.instruction=2": 70.0,
    }
    assert study.reached_checkpoints() == {4: "qa.demos=1,qa.instruction=2", 8: ""}
    assert study.claim_finish() and study.claim_finish()  # this worker, again
    study.study.set_user_attr("finished_by", "elsewhere.example:1")  # a live other host
    assert not study.claim_finish()
