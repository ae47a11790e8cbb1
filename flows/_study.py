"""The Optuna study behind MIPROv2's search, shareable by several worker processes.

Trials are *slots* with a logical index 0..num_trials-1. A worker reserves slots under a lock
(an ``flock`` beside a SQLite study; a PostgreSQL advisory lock on PostgreSQL), so two workers
never take the same index and never run more than ``num_trials`` trials between them. Each
slot's sampler seed and minibatch come from its index, so results do not depend on which
worker ran it. A RUNNING trial whose worker is gone (its process on this host is dead, or it
has not been touched for ``STALE_AFTER_S``) is failed and its index is taken again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["WORKER", "alive", "finished", "lock", "open_study", "reserve"]

STALE_AFTER_S = 600.0
WORKER = f"{socket.gethostname()}:{os.getpid()}"


def alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine: judged by the heartbeat age instead
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock(storage: str) -> Iterator[None]:
    """Serialize slot reservation across processes."""
    if storage.startswith("sqlite:///"):
        from dspex.flows._spine import file_lock

        with file_lock(Path(storage.removeprefix("sqlite:///") + ".lock")):
            yield
        return
    if storage.startswith("postgresql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(storage)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(424242)"))
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(424242)"))
        return
    yield  # other databases: reservation is best effort (documented)


def open_study(storage: str, name: str, seed: int) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with lock(storage):
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        _fail_stale(study)
    return study


def _trials(study: Any, states: tuple[Any, ...]) -> list[Any]:
    """Trials read from the database itself: Optuna's per-process cache can miss another
    worker's updates, and a reservation decided on a stale view would take a slot twice."""
    backend = getattr(study._storage, "_backend", study._storage)
    trials: list[Any] = backend.get_all_trials(study._study_id, deepcopy=False, states=states)
    return trials


def _fail_stale(study: Any) -> None:
    """Heartbeats only cover study.optimize: an ask/tell loop must fail its own orphans."""
    from optuna.trial import TrialState

    now = time.time()
    for t in _trials(study, (TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        touched = t.user_attrs.get("touched")
        if worker is None or touched is None:
            # A trial seen before its owner labelled it (a cached read of another worker's
            # reservation): not an orphan.
            continue
        if not alive(str(worker)) or now - float(touched) > STALE_AFTER_S:
            study._storage.set_trial_user_attr(t._trial_id, "stale", True)
            study.tell(t.number, state=TrialState.FAIL)


def finished(study: Any) -> dict[int, Any]:
    """Logical index → finished trial (completed, or failed by its evaluation)."""
    from optuna.trial import TrialState

    done = {}
    for t in _trials(study, (TrialState.COMPLETE, TrialState.FAIL)):
        if "index" in t.user_attrs and not t.user_attrs.get("stale"):
            done[t.user_attrs["index"]] = t
    return done


def _taken(study: Any) -> set[int]:
    """Indices finished or running, from ONE read: a trial told between two reads (running in
    the first, finished in the second) would otherwise be missed and its slot taken twice."""
    from optuna.trial import TrialState

    taken = set()
    states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.FAIL)
    for t in _trials(study, states):
        if "index" in t.user_attrs and not t.user_attrs.get("stale"):
            taken.add(t.user_attrs["index"])
    return taken


def _suggest(study: Any, index: int, batch: int, seed: int, dists: Any) -> dict[str, Any]:
    """Parameters for slot ``index``: TPE seeded by the index, shown only the trials of the
    batches before this one — so the answer is the same whether or not a crash interrupted
    this batch, and whichever worker asks."""
    import optuna
    from optuna.trial import TrialState

    start = index - index % batch
    history = sorted(
        (
            t
            for t in finished(study).values()
            if t.state == TrialState.COMPLETE and t.user_attrs["index"] < start
        ),
        key=lambda t: t.user_attrs["index"],
    )
    scratch = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed * 1_000_003 + index)
    )
    scratch.add_trials(history)
    return dict(scratch.ask(dists).params)


def reserve(study: Any, storage: str, k: int, num_trials: int, seed: int, dists: Any) -> list[Any]:
    """Up to ``k`` trials for the lowest free indices (``k`` is also the batch size)."""
    with lock(storage):
        _fail_stale(study)
        taken = _taken(study)
        free = [i for i in range(num_trials) if i not in taken][:k]
        trials = []
        for index in free:
            study.enqueue_trial(_suggest(study, index, k, seed, dists), skip_if_exists=False)
            trial = study.ask(dists)  # pops the trial just enqueued (we hold the lock)
            trial.set_user_attr("index", index)
            trial.set_user_attr("worker", WORKER)
            trial.set_user_attr("touched", time.time())
            trials.append(trial)
    return trials
