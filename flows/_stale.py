"""Flow runs of local processes that died: marked ``Crashed`` on the next local start.

Local runs have heartbeats off, so a killed ``compile()`` leaves its flow run ``Running``
for ever. Each local flow run records, once running, which process runs it
(``<runs>/local-runs/<flow run id>.json``: host, pid, the process's start time). A later
local start in the same runs directory reads these records; a run of this host whose process
is gone (or whose pid now belongs to another process) and that the API still shows
``Running`` or ``Pending`` is set ``Crashed``, with its unfinished subflow runs. Runs of
other hosts and of live processes are never touched. A finished run's record is removed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any
from uuid import UUID

__all__ = ["crash_stale_runs", "forget", "record_running", "this_process"]

_log = logging.getLogger("dspex.flows")
_DIR = "local-runs"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _start_time(pid)}


def _alive(pid: int, started: str | None) -> bool:
    """Whether the process that wrote a record still runs (not a zombie, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process with this pid: alive, unless its start time differs
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        except OSError:
            return False
        return started is None or _start_time(pid) == started
    return True


def record_running(runs: Path, flow_run_id: UUID) -> None:
    """Note that this process runs ``flow_run_id`` (owner-only file)."""
    folder = runs / _DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{flow_run_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"flow_run_id": str(flow_run_id), **this_process()}, f)


def forget(runs: Path, flow_run_id: UUID | str) -> None:
    (runs / _DIR / f"{flow_run_id}.json").unlink(missing_ok=True)


def _records(runs: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted((runs / _DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            UUID(record["flow_run_id"])
            int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            _log.warning("Ignoring the unreadable local run record %s.", path)
            continue
        records.append(record)
    return records


def crash_stale_runs(runs: Path) -> list[UUID]:
    """Set ``Crashed`` the unfinished flow runs of this host's dead local processes; returns
    their ids."""
    host = socket.gethostname()
    stale = [
        r
        for r in _records(runs)
        if r.get("host") == host and not _alive(int(r["pid"]), r.get("started"))
    ]
    if not stale:
        return []
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    crashed: list[UUID] = []
    with get_client(sync_client=True) as client:
        for record in stale:
            run_id = UUID(record["flow_run_id"])
            try:
                crashed += _crash(client, run_id, record)
            except ObjectNotFound:
                pass  # recorded on another API server's database: not ours to judge here
            forget(runs, run_id)
    return crashed


def _crash(client: Any, run_id: UUID, record: dict[str, Any]) -> list[UUID]:
    """Crash ``run_id`` and its unfinished subflow runs, if unfinished."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    kinds = [StateType.RUNNING, StateType.PENDING]
    unfinished = FlowRunFilterState(type=FlowRunFilterStateType(any_=kinds))
    crashed: list[UUID] = []
    flow_run = client.read_flow_run(run_id)
    if flow_run.state is not None and flow_run.state.type in kinds:
        message = (
            f"The local process that ran this flow ({record['host']}, pid {record['pid']}) "
            "is gone; marked crashed when dspex started the next local run."
        )
        client.set_flow_run_state(run_id, Crashed(message=message), force=True)
        crashed.append(run_id)
        _log.warning("Flow run %s: %s", run_id, message)
    children = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id]), state=unfinished
        )
    )
    for child in children:
        crashed += _crash(client, child.id, record)
    return crashed
