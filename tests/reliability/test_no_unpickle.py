"""Nothing dspex reads from disk is unpickled: the LM cache, the Optuna study and the trace
parts each get a planted pickle whose unpickling would create a marker file, and reading
them either ignores the entry or raises a dspex error naming the file; the marker never
appears. (Persisted Prefect results: ``test_local_runs.py`` and ``test_deployments.py``.)"""

from __future__ import annotations

import logging
import pickle
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import dspex
from dspex.errors import DataError
from dspex.lm import Cache
from dspex.testing import SimulatedLM, fetch_stats, serve
from dspex.traces import CorruptPartWarning, TraceWriter, compact, report, runs, sql
from tests.flows.programs import DEV, TASK, TRAIN, exact, solver
from tests.traces._rows import make_rows


class _Payload:
    """Unpickling this creates ``path``: the code a planted pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _pickled(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


# --- the LM response cache ------------------------------------------------------------


def _sim_lm(url: str, cache: Cache) -> dspex.LM:
    return dspex.LM("openai/sim", api_base=url, api_key="x", cache=cache, num_retries=0)


@pytest.mark.parametrize("stored_as", ["blob", "text"])
def test_a_pickled_cache_entry_is_a_miss_and_never_runs(tmp_path: Path, stored_as: str) -> None:
    marker = tmp_path / "pwned"
    directory = tmp_path / "lm-cache"
    with serve(SimulatedLM("arithmetic")) as srv:
        cache = Cache(directory)
        first = _sim_lm(srv.url, cache)("What is 2 + 3?")
        cache.close()  # flushed to disk
        payload = _pickled(marker)
        value: bytes | str = payload if stored_as == "blob" else payload.decode("latin-1")
        with closing(sqlite3.connect(directory / "lm_cache.sqlite3")) as db, db:
            assert db.execute("UPDATE entries SET value = ?", (value,)).rowcount == 1
        sent = fetch_stats(srv.url)["requests"]

        again = _sim_lm(srv.url, Cache(directory))("What is 2 + 3?")

        assert fetch_stats(srv.url)["requests"] == sent + 1, "the tampered entry is a miss"
    assert again == first
    assert not marker.exists(), "a cache entry was unpickled"


def test_a_cache_file_replaced_by_a_pickle_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    directory = tmp_path / "lm-cache"
    directory.mkdir()
    (directory / "lm_cache.sqlite3").write_bytes(_pickled(marker))
    with serve(SimulatedLM("arithmetic")) as srv, caplog.at_level(logging.WARNING, "dspex.lm"):
        cache = Cache(directory)
        assert _sim_lm(srv.url, cache)("What is 2 + 3?")
        cache.close()
    assert not marker.exists(), "the cache file was unpickled"
    assert "is unreadable" in caplog.text and "lm_cache.sqlite3" in caplog.text
    assert list(directory.glob("lm_cache.sqlite3.corrupt-*")), "the bad file is kept aside"


# --- the Optuna study behind MIPROv2 --------------------------------------------------

# Every column of Optuna's RDB schema that holds JSON or a value dspex reads back.
COLUMNS = [
    ("trial_params", "distribution_json"),
    ("trial_user_attributes", "value_json"),
    ("trial_system_attributes", "value_json"),
    ("study_user_attributes", "value_json"),
    ("study_system_attributes", "value_json"),
    ("trial_values", "value"),
]


def _mipro(runs_dir: Path) -> dspex.Module:
    opt = dspex.MIPROv2(
        exact,
        auto=None,
        num_candidates=2,
        num_trials=2,
        max_bootstrapped_demos=0,
        max_labeled_demos=2,
        minibatch_size=5,
        seed=0,
    )
    return opt.compile(
        solver(), trainset=TRAIN[:10], valset=DEV[:10], lm=SimulatedLM(task=TASK), runs_dir=runs_dir
    )


def _plant(db: Path, table: str, column: str, value: bytes | str) -> None:
    with closing(sqlite3.connect(db)) as con, con:
        assert con.execute(f"UPDATE {table} SET {column} = ?", (value,)).rowcount >= 1


@pytest.mark.slow
def test_a_tampered_optuna_study_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    runs_dir = tmp_path / "runs"
    _mipro(runs_dir)
    (db,) = (runs_dir / "optuna").glob("*.db")
    pristine = tmp_path / "pristine.db"
    shutil.copy(db, pristine)

    # A pickle where Optuna keeps a distribution's JSON; then the whole file a pickle.
    _plant(db, "trial_params", "distribution_json", _pickled(marker).decode("latin-1"))
    with pytest.raises(DataError, match="Optuna study") as refused:
        _mipro(runs_dir)
    assert str(db) in str(refused.value) and "edited or damaged" in str(refused.value)
    db.write_bytes(_pickled(marker))
    with pytest.raises(DataError, match="file is not a database"):
        _mipro(runs_dir)
    assert not marker.exists(), "the study was unpickled"

    shutil.copy(pristine, db)  # the untouched study resumes as before
    _mipro(runs_dir)


@pytest.mark.parametrize(("table", "column"), COLUMNS)
@pytest.mark.parametrize("stored_as", ["blob", "text"])
def test_every_optuna_column_refuses_a_planted_pickle(
    tmp_path: Path, table: str, column: str, stored_as: str
) -> None:
    from optuna.distributions import CategoricalDistribution

    from dspex.flows._study import SharedStudy

    marker = tmp_path / "pwned"
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    study = SharedStudy(url, "s", seed=0)
    for trial in study.reserve(2, 2, 0, {"p": CategoricalDistribution([0, 1])}):
        study.tell(trial, {"score": 0.5})
    study.record_full(0, "p=0", 0.5)
    assert study.claim_finish()  # study user attributes: a full score, the finisher
    study._storage.set_study_system_attr(study._id, "note", "x")  # and a system one
    payload = _pickled(marker)
    _plant(db, table, column, payload if stored_as == "blob" else payload.decode("latin-1"))

    with pytest.raises(DataError, match="Optuna study") as refused:
        SharedStudy(url, "s", seed=0)
    assert str(db) in str(refused.value)
    assert not marker.exists()


# --- trace parts ----------------------------------------------------------------------


def test_trace_parts_are_never_unpickled(tmp_path: Path) -> None:
    """A pickle named like a part is a corrupt part; a real Parquet part whose Arrow schema
    names pyarrow's old pickle-based extension type (CVE-2023-47248), with a pickle as pandas
    metadata too, is read as plain data."""
    marker = tmp_path / "pwned"
    for start in (0, 5):
        with TraceWriter(tmp_path, "r", compression="none") as writer:
            for row in make_rows(5, start=start):
                writer.add(row)
    folder = tmp_path / "traces" / "run_id=r"
    part = sorted(folder.glob("*.parquet"))[1]
    table = pq.read_table(part)
    i = table.schema.get_field_index("model")
    field = table.schema.field(i).with_metadata(
        {
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": _pickled(marker),
        }
    )
    metadata = {**(table.schema.metadata or {}), b"pandas": _pickled(marker)}
    schema = table.schema.set(i, field).with_metadata(metadata)
    pq.write_table(table.cast(schema), part)
    planted = folder / "part-pickle.parquet"
    planted.write_bytes(_pickled(marker))

    with pytest.warns(CorruptPartWarning) as record:
        counted = sql("SELECT count(*) AS n FROM traces", tmp_path).to_pylist()
    assert counted == [{"n": 10}]
    assert {w.message.path for w in record if isinstance(w.message, CorruptPartWarning)} == {
        planted
    }
    with pytest.warns(CorruptPartWarning):
        assert runs(tmp_path).column("rows").to_pylist() == [10]
    with pytest.warns(CorruptPartWarning):
        assert sum(report("cost", tmp_path).column("calls").to_pylist()) == 10
    done = compact(tmp_path, "r")
    assert done.rows == 10 and [p.name for p in done.quarantined] == [planted.name]
    assert pq.read_table(done.path).num_rows == 10
    assert not marker.exists(), "a trace part was unpickled"
