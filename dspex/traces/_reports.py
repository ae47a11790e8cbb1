"""Named reports over the traces: cost, latency, errors and cache, plus the list of runs.

Each report is one SQL query over the ``traces`` view (see :func:`dspex.traces.connect`). The
optional ``run_id`` and ``stage`` filters are bound as parameters, never formatted into the
SQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from dspex.errors import UserError
from dspex.traces._query import run_query

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["REPORTS", "report", "runs"]


class _Report(NamedTuple):
    description: str
    sql: str  # "{filters}" is replaced by fixed "AND col = $param" clauses, nothing else


_REPORTS: Mapping[str, _Report] = {
    "cost": _Report(
        "LM calls, cache hits, tokens and USD cost by run, stage and module path",
        """
        SELECT run_id, stage, coalesce(module_path, predictor) AS module_path,
            count(*) AS calls,
            count(*) FILTER (WHERE cache_hit) AS cache_hits,
            sum(prompt_tokens)::BIGINT AS prompt_tokens,
            sum(completion_tokens)::BIGINT AS completion_tokens,
            sum(cost) AS cost,
            count(*) FILTER (WHERE cost IS NULL AND NOT cache_hit) AS calls_cost_unknown
        FROM traces WHERE kind = 'lm' {filters}
        GROUP BY ALL
        ORDER BY run_id, cost DESC NULLS LAST, stage, module_path
        """,
    ),
    "latency": _Report(
        "latency percentiles (ms) of LM calls that were not cache hits, by run, stage, model",
        """
        SELECT run_id, stage, model, calls, q[1] AS p50_ms, q[2] AS p90_ms, q[3] AS p99_ms,
            mean_ms, max_ms
        FROM (
            SELECT run_id, stage, model, count(*) AS calls,
                quantile_cont(latency_ms, [0.5, 0.9, 0.99]) AS q,
                avg(latency_ms) AS mean_ms, max(latency_ms) AS max_ms
            FROM traces WHERE kind = 'lm' AND NOT cache_hit {filters}
            GROUP BY ALL
        )
        ORDER BY run_id, stage, model
        """,
    ),
    "errors": _Report(
        "failed calls (and retried LM attempts, kind lm_attempt) by run, stage, kind and "
        "error type, with the first message",
        """
        SELECT run_id, stage, kind, error_type, count(*) AS errors,
            arg_min(error_message, started_at) AS first_message
        FROM traces WHERE error_type IS NOT NULL {filters}
        GROUP BY ALL
        ORDER BY run_id, errors DESC, stage, kind, error_type
        """,
    ),
    "cache": _Report(
        "LM cache hit rate by run and stage",
        """
        SELECT run_id, stage, count(*) AS calls,
            count(*) FILTER (WHERE cache_hit) AS cache_hits,
            count(*) FILTER (WHERE cache_hit) / count(*) AS hit_rate
        FROM traces WHERE kind = 'lm' {filters}
        GROUP BY ALL
        ORDER BY run_id, stage
        """,
    ),
}

REPORTS: Mapping[str, str] = {name: r.description for name, r in _REPORTS.items()}
"""The report names, each with a one-line description."""

_RUNS_SQL = """
SELECT run_id, count(*) AS rows,
    count(*) FILTER (WHERE kind = 'lm') AS lm_calls,
    count(*) FILTER (WHERE error_type IS NOT NULL AND kind <> 'lm_attempt') AS errors,
    count(*) FILTER (WHERE kind = 'lm_attempt') AS retries,
    sum(cost) FILTER (WHERE kind = 'lm') AS cost,
    min(started_at) AS started_at,
    max(ended_at) AS ended_at
FROM traces
GROUP BY run_id
ORDER BY started_at, run_id
"""


def report(
    name: str,
    runs_dir: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    stage: str | None = None,
) -> pa.Table:
    """Compute a named report over the traces.

    Reports: ``cost`` (calls, cache hits, tokens, cost by run, stage, module path),
    ``latency`` (p50/p90/p99/mean/max ms of LM calls that missed the cache, by run, stage,
    model), ``errors`` (failed calls by run, stage, kind, error type; failed LM attempts that
    were retried have kind ``lm_attempt``) and ``cache`` (hit rate by run and stage).
    ``cost`` sums known costs; ``calls_cost_unknown`` counts calls whose price was unknown,
    so a non-zero value means the cost is a lower bound.

    Args:
        name: one of :data:`REPORTS`.
        runs_dir: the runs directory; ``None`` means ``$DSPEX_RUNS_DIR`` or ``./dspex-runs``.
        run_id: only this run.
        stage: only rows with this stage label.

    An unreadable part is left out with a :class:`~dspex.traces.CorruptPartWarning` naming
    it, as in :func:`~dspex.traces.sql`.

    Raises:
        UserError: ``name`` is not a report.
        TraceReadError: the traces could not be read even without the unreadable parts.

    Example:
        >>> import tempfile
        >>> from dspex.traces import report
        >>> report("cost", tempfile.mkdtemp(), stage="bootstrap").column_names[:4]
        ['run_id', 'stage', 'module_path', 'calls']
    """
    spec = _REPORTS.get(name)
    if spec is None:
        raise UserError(f"Unknown trace report {name!r}; the reports are {', '.join(_REPORTS)}.")
    clauses, params = [], {}
    if run_id is not None:
        clauses.append("AND run_id = $run_id")
        params["run_id"] = run_id
    if stage is not None:
        clauses.append("AND stage = $stage")
        params["stage"] = stage
    return _run(spec.sql.replace("{filters}", " ".join(clauses)), runs_dir, params)


def runs(runs_dir: str | os.PathLike[str] | None = None) -> pa.Table:
    """One row per run: rows, LM calls, errors, retried LM attempts, cost and time span.

    ``errors`` counts calls that failed in the end; ``retries`` counts the failed LM attempts
    that were retried (rows of kind ``lm_attempt``).

    Example:
        >>> import tempfile
        >>> from dspex.traces import runs
        >>> runs(tempfile.mkdtemp()).num_rows
        0
    """
    return _run(_RUNS_SQL, runs_dir, {})


def _run(query: str, runs_dir: str | os.PathLike[str] | None, params: dict[str, Any]) -> pa.Table:
    return run_query(query, runs_dir, params or None)
