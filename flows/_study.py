"""The Optuna study behind MIPROv2's search, shareable by several worker processes.

Trials are *slots* with a logical index 0..num_trials-1. A worker reserves slots under a lock
(a file lock beside a SQLite study; a PostgreSQL advisory lock on PostgreSQL), so two workers
never take the same index and never run more than ``num_trials`` trials between them. Each
slot's sampler seed and minibatch come from its index, so results do not depend on which
worker ran it. A RUNNING trial whose worker is gone (its process on this host is dead, or it
has not been touched for ``STALE_AFTER_S``) is failed and its index is taken again.

The study also stores the search's progress beside its trials, as study attributes: the
score of each full evaluation (``full:<config>``) and the configuration evaluated at each
reached checkpoint (``checkpoint:<n>``). Only Optuna's public API is used.

Optuna's RDB storage keeps parameters, distributions and attributes as JSON and values as
numbers: nothing in a study is unpickled. A study edited or damaged on disk (a value that is
no JSON or no number, a file that is no database) is refused when it is opened, with a
``DataError`` naming it, instead of failing later inside Optuna.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dspex.errors import DataError
from dspex.flows._locks import advisory_lock, file_lock
from dspex.optimize._mipro_search import TrialOutcome

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, Trial, TrialState

__all__ = [
    "STALE_AFTER_S",
    "WORKER",
    "Planned",
    "SharedStudy",
    "alive",
    "lock",
    "sqlite_storage",
]

STALE_AFTER_S = 600.0
WORKER = f"{socket.gethostname()}:{os.getpid()}"
_ADVISORY_KEY = 424242

T = TypeVar("T")
Planned = tuple[int, dict[str, Any]]  # a slot's logical index and its parameters


def alive(worker: str) -> bool:
    """Whether a worker (``host:pid``) may still be running."""
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
    """Serialize slot reservation (and the finish claim) across processes."""
    if storage.startswith("sqlite:///"):
        with file_lock(Path(storage.removeprefix("sqlite:///") + ".lock")):
            yield
    elif storage.startswith("postgresql"):
        with advisory_lock(storage, _ADVISORY_KEY):
            yield
    else:
        yield  # other databases: reservation is best effort (documented)


def sqlite_storage(runs: Path, key: str) -> str:
    """The default storage: a SQLite study under the runs directory."""
    (runs / "optuna").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / 'optuna' / f'{key}.db'}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _outcomes(finished: Mapping[int, FrozenTrial]) -> dict[int, TrialOutcome]:
    """Finished trials (index → trial) as the search policy sees them."""
    from optuna.trial import TrialState

    return {
        index: TrialOutcome(
            index=index,
            config={k: int(v) for k, v in t.params.items()},
            score=t.value if t.state == TrialState.COMPLETE else None,
            error=t.user_attrs.get("error"),
            row_scores={
                int(row): float(score) for row, score in t.user_attrs.get("row_scores", [])
            },
            reused_from=t.user_attrs.get("reused_from"),
        )
        for index, t in finished.items()
    }


@contextlib.contextmanager
def _refused_if_unreadable(url: str) -> Iterator[None]:
    """A study that cannot be read as Optuna's JSON and numbers is a ``DataError`` naming
    it (a busy database is not: that error stays Optuna's)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DatabaseError, OperationalError

    try:
        yield
    except (ValueError, TypeError, KeyError, DatabaseError, StorageInternalError) as e:
        # Optuna wraps a failed commit: where a storage opened before meets a damaged file.
        cause = e.__cause__ if isinstance(e, StorageInternalError) else e
        damaged = ValueError | TypeError | KeyError | DatabaseError
        if not isinstance(cause, damaged) or isinstance(cause, OperationalError):
            raise
        where = make_url(url).render_as_string(hide_password=True)
        why = (str(cause).splitlines() or [""])[0][:200]
        raise DataError(
            f"The Optuna study at {where} cannot be read ({type(cause).__name__}: {why}): it "
            "was edited or damaged. dspex reads a study as JSON and numbers only; nothing in "
            "it is unpickled or imported. Move the database aside (or delete the study) to "
            "start the search again: the run's finished tasks are reused."
        ) from cause


@functools.cache
def _rdb(url: str) -> optuna.storages.RDBStorage:
    """One storage (one engine) per URL for the life of the process.

    A SQLite study does not wait for the disk at each commit (``PRAGMA synchronous=OFF``):
    Optuna commits every attribute, parameter and state change on its own, ~40 commits per
    batch of four trials, and at ~15 ms of ``fsync`` each they held the search between
    batches for longer than a wave of LM calls. Every commit still reaches the operating
    system before it returns, so other processes see it and a killed worker loses nothing
    (the resume the study exists for); only an operating-system crash or a power cut can
    lose or damage the last writes, and a damaged study is refused on open with a
    ``DataError`` saying how to start over (the run's finished tasks are reused).
    """
    import optuna

    storage = optuna.storages.RDBStorage(url)
    if storage.engine.dialect.name == "sqlite":
        from sqlalchemy import event

        def no_fsync(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()

        event.listen(storage.engine, "connect", no_fsync)
        storage.engine.dispose()  # the connections opened while creating the schema
    return storage


class SharedStudy:
    """One run's study: Optuna's ``Study`` for asks and tells, and reads straight from the
    database, because Optuna's per-process cache can miss another worker's updates and a
    reservation decided on a stale view would take a slot twice."""

    def __init__(self, url: str, name: str, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.url = url
        with lock(url), _refused_if_unreadable(url):
            # Creating the storage stamps a fresh database's schema version: two workers
            # doing that at once collide (UNIQUE constraint on alembic_version).
            self._storage = _rdb(url)
            self.study = optuna.create_study(
                study_name=name,
                storage=self._storage,
                direction="maximize",
                load_if_exists=True,
                sampler=optuna.samplers.TPESampler(seed=seed),
            )
            self._id = self._storage.get_study_id_from_name(name)
            self._check_readable()
            self._fail_stale()

    @property
    def name(self) -> str:
        return self.study.study_name

    def _check_readable(self) -> None:
        """Read the study once as the search will: every trial (its parameters through
        their stored distributions, its attributes), the study's attributes, and values
        that are numbers. Optuna decodes JSON here, so an edited entry fails now."""
        trials = self._storage.get_all_trials(self._id, deepcopy=False)
        self._storage.get_study_system_attrs(self._id)
        attrs = self._storage.get_study_user_attrs(self._id)
        for t in trials:
            if not all(_number(v) for v in t.values or ()):
                raise ValueError(f"trial {t.number} has a value that is not a number")
            pairs = t.user_attrs.get("row_scores", [])
            if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(map(_number, p)) for p in pairs
            ):
                raise ValueError(f"trial {t.number} has row scores that are not numbers")
        for key, value in attrs.items():
            if key.startswith("full:") and not (value is None or _number(value)):
                raise ValueError(f"the study attribute {key!r} is not a score")

    def _read(self, states: Sequence[TrialState]) -> list[FrozenTrial]:
        return self._storage.get_all_trials(self._id, deepcopy=False, states=tuple(states))

    def _fail_stale(self) -> None:
        """Heartbeats only cover study.optimize: an ask/tell loop must fail its own orphans."""
        from optuna.trial import TrialState

        now = time.time()
        for t in self._read((TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            touched = t.user_attrs.get("touched")
            if worker is None or touched is None:
                # A trial seen before its owner labelled it (a read of another worker's
                # reservation in progress): not an orphan.
                continue
            if not alive(str(worker)) or now - float(touched) > STALE_AFTER_S:
                trial_id = self._storage.get_trial_id_from_study_id_trial_number(self._id, t.number)
                self._storage.set_trial_user_attr(trial_id, "stale", True)
                self.study.tell(t.number, state=TrialState.FAIL)

    def _indexed(self, states: Sequence[TrialState]) -> dict[int, FrozenTrial]:
        """Logical index → trial, for the trials in ``states`` that hold a slot; from ONE
        read: a trial told between two reads (running in the first, finished in the
        second) would otherwise be missed and its slot taken twice."""
        return {
            int(t.user_attrs["index"]): t
            for t in self._read(states)
            if "index" in t.user_attrs and not t.user_attrs.get("stale")
        }

    def finished(self) -> dict[int, FrozenTrial]:
        """Logical index → finished trial (completed, or failed by its evaluation)."""
        from optuna.trial import TrialState

        return self._indexed((TrialState.COMPLETE, TrialState.FAIL))

    def outcomes(self) -> dict[int, TrialOutcome]:
        """The finished trials as the search policy sees them."""
        return _outcomes(self.finished())

    def _suggest(
        self,
        index: int,
        batch: int,
        seed: int,
        dists: Mapping[str, BaseDistribution],
        finished: Mapping[int, FrozenTrial],
    ) -> dict[str, Any]:
        """Parameters for slot ``index``: TPE seeded by the index, shown only the trials of
        the batches before this one (from ``finished``: index → finished trial) — so the
        answer is the same whether or not a crash interrupted this batch, and whichever
        worker asks."""
        import optuna
        from optuna.trial import TrialState

        start = index - index % batch
        history = [
            t for i, t in sorted(finished.items()) if t.state == TrialState.COMPLETE and i < start
        ]
        scratch = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed * 1_000_003 + index),
        )
        scratch.add_trials(history)
        return dict(scratch.ask(dict(dists)).params)

    def reserve(
        self, k: int, num_trials: int, seed: int, dists: Mapping[str, BaseDistribution]
    ) -> list[Trial]:
        """Up to ``k`` trials for the lowest free indices (``k`` is also the batch size)."""
        return self.reserve_and_start(k, num_trials, seed, dists, lambda planned, done: None)[0]

    def reserve_and_start(
        self,
        k: int,
        num_trials: int,
        seed: int,
        dists: Mapping[str, BaseDistribution],
        start: Callable[[list[Planned], dict[int, TrialOutcome]], T],
    ) -> tuple[list[Trial], T]:
        """Reserve up to ``k`` trials for the lowest free indices (``k`` is also the batch
        size), calling ``start`` with each slot's (index, parameters) and the finished
        trials' outcomes as soon as the parameters are known: it starts their evaluations
        while the reservation is written (Optuna's writes would otherwise delay the first LM
        call of every batch). The lock is held until the reservation is written, so no other
        worker takes these slots, and a worker killed before it is written leaves the slots
        free: they are reserved again with the same parameters (seeded by the index), and
        the evaluations, their inputs the same, come back from the task cache.
        """
        from optuna.trial import TrialState

        with lock(self.url):
            self._fail_stale()
            taken = self._indexed((TrialState.RUNNING, TrialState.COMPLETE, TrialState.FAIL))
            free = [i for i in range(num_trials) if i not in taken][:k]
            finished = {i: t for i, t in taken.items() if t.state != TrialState.RUNNING}
            planned = [(i, self._suggest(i, k, seed, dists, finished)) for i in free]
            started = start(planned, _outcomes(finished))
            trials = []
            for index, params in planned:
                # Labelled as it is enqueued: one write, not one per attribute.
                attrs = {"index": index, "worker": WORKER, "touched": time.time()}
                self.study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
                trials.append(self.study.ask(dict(dists)))  # pops the trial just enqueued
        return trials, started

    def tell(self, trial: Trial, result: Mapping[str, Any] | None) -> None:
        """Record a trial's evaluation: its score, or its error as a failed trial. ``None``
        (stopped by the budget) leaves it running: a resumed run fails it and runs its
        slot again."""
        from optuna.trial import TrialState

        if result is None:
            return
        if result["score"] is None:
            trial.set_user_attr("error", result["error"])
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            if result.get("row_scores") is not None:
                trial.set_user_attr("row_scores", result["row_scores"])
            if result.get("reused_from") is not None:
                trial.set_user_attr("reused_from", result["reused_from"])
            self.study.tell(trial, result["score"])

    def reached_checkpoints(self) -> dict[int, str]:
        """Checkpoint → the configuration key evaluated there ('' for none)."""
        return {
            int(k.removeprefix("checkpoint:")): str(v)
            for k, v in self.study.user_attrs.items()
            if k.startswith("checkpoint:")
        }

    def full_scores(self) -> dict[str, float | None]:
        """Configuration key → score of its full evaluation."""
        return {
            k.removeprefix("full:"): v
            for k, v in self.study.user_attrs.items()
            if k.startswith("full:")
        }

    def record_checkpoint(self, checkpoint: int, key: str) -> None:
        self.study.set_user_attr(f"checkpoint:{checkpoint}", key)

    def record_full(self, checkpoint: int, key: str, score: float | None) -> None:
        """Store a full evaluation's score; its checkpoint counts as reached only now."""
        self.study.set_user_attr("full:" + key, score)
        if checkpoint:
            self.record_checkpoint(checkpoint, key)

    def claim_finish(self) -> bool:
        """Whether this worker logs, saves and registers the result (exactly one does)."""
        with lock(self.url):
            owner = self.study.user_attrs.get("finished_by")
            if owner is not None and owner != WORKER and alive(str(owner)):
                return False
            self.study.set_user_attr("finished_by", WORKER)
            return True
