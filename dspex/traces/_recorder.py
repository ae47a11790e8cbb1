"""``TraceRecorder``: turns events into trace rows, one per LM call and one per module call,
plus one per failed LM attempt that was retried (kind ``lm_attempt``) and one per tool call
(kind ``tool``: the tool's name in ``module_path``, its arguments, redacted, in ``inputs``),
one per retrieval (kind ``retrieve``: the retriever's name in ``module_path``, its class in
``module_class``, ``{"query", "k"}`` in ``inputs`` and ``{"ids", "scores", "passages"}`` in
``outputs``) and one per embedding batch (kind ``embed``: the model, its tokens, cost and
whether the cache answered).

An LM call's row is completed by the adapter's parse event (its parsed outputs or parse
error) and handed to the writer then; rows whose parse never comes (a direct ``lm(...)`` call,
or a module that failed) are handed over when their enclosing module call ends, or at once
when there is none.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dspex._redact import redact
from dspex._settings import context, current
from dspex.callbacks import Callback, Span
from dspex.errors import UserError

if TYPE_CHECKING:
    from dspex.errors import LMError
    from dspex.lm import LMRequest, LMResponse
    from dspex.traces._store import TraceWriter

__all__ = ["TraceRecorder", "new_run_id", "record"]

_log = logging.getLogger("dspex.traces")


def new_run_id() -> str:
    """A sortable, unique run id: ``20261125T144300-1a2b3c``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()


def _trial(labels: Mapping[str, Any]) -> int | None:
    value = labels.get("trial")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _base_row(span: Span, kind: str, ended_at: float, duration_s: float) -> dict[str, Any]:
    labels = span.labels
    stage = labels.get("stage")
    return {
        "span_id": span.span_id,
        "parent_span_id": span.parent_id,
        "kind": kind,
        "stage": None if stage is None else str(stage),
        "trial": _trial(labels),
        "labels": labels,  # the writer stringifies keys and values off the event loop
        "module_path": None,
        "module_class": None,
        "predictor": None,
        "signature": None,
        "model": None,
        "inputs": None,
        "messages": None,
        "response": None,
        "outputs": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": None,
        "latency_ms": duration_s * 1000.0,
        "cache_hit": False,
        "rollout_id": None,
        "attempt": None,
        "status": "ok",
        "http_status": None,
        "error_type": None,
        "error_message": None,
        "started_at": span.started_at,
        "ended_at": ended_at,
    }


def _set_error(row: dict[str, Any], error: BaseException | None, status: str = "error") -> None:
    if error is not None:
        row["status"] = status
        row["error_type"] = type(error).__name__
        row["error_message"] = str(error)[:4000]  # the writer redacts it
        http_status = getattr(error, "status", None)  # LMError's HTTP status
        if isinstance(http_status, int) and not isinstance(http_status, bool):
            row["http_status"] = http_status


class TraceRecorder(Callback):
    """Writes a row per LM call and per module call to a :class:`TraceWriter`.

    Use :func:`record` rather than building one by hand.
    """

    def __init__(self, writer: TraceWriter, run_id: str) -> None:
        self.writer = writer
        self.run_id = run_id
        self._lock = threading.Lock()
        self._modules: dict[str, tuple[Span, Any]] = {}  # open module spans: span, inputs
        self._pending: dict[str, dict[str, Any]] = {}  # LM rows waiting for their parse
        self._by_parent: dict[str, list[str]] = {}
        self._attempts: dict[str, int] = {}  # LM span id -> failed attempts retried so far
        self._tool_args: dict[str, Any] = {}  # open tool spans: their redacted arguments
        self._queries: dict[str, dict[str, Any]] = {}  # open retrieve spans: query and k

    # -- modules ---------------------------------------------------------------------------
    def on_module_start(self, span: Span, module: Any, inputs: Mapping[str, Any]) -> None:
        # Raw values: the writer's background thread encodes them as JSON, off the event loop.
        with self._lock:
            self._modules[span.span_id] = (span, (module, dict(inputs)))

    def on_module_end(
        self, span: Span, module: Any, outputs: Any, error: BaseException | None
    ) -> None:
        now = time.time()
        with self._lock:
            _, (mod, inputs_json) = self._modules.pop(span.span_id, (span, (module, None)))
            orphans = [
                self._pending.pop(i)
                for i in self._by_parent.pop(span.span_id, ())
                if i in self._pending
            ]
        for row in orphans:
            self._write(row)
        row = _base_row(span, "module", now, span.elapsed_s)
        row["module_path"] = span.name or "self"
        row["module_class"] = span.module_class
        row["signature"] = _signature_name(mod)
        row["inputs"] = inputs_json
        if outputs is not None:
            row["outputs"] = outputs.to_dict() if hasattr(outputs, "to_dict") else outputs
            usage = getattr(outputs, "usage", None)
            if usage is not None:
                row["prompt_tokens"] = usage.prompt_tokens
                row["completion_tokens"] = usage.completion_tokens
                row["cost"] = usage.cost
        _set_error(row, error)
        self._write(row)

    # -- tool calls ------------------------------------------------------------------------
    def on_tool_start(self, span: Span, name: str, args: Mapping[str, Any]) -> None:
        with self._lock:
            self._tool_args[span.span_id] = redact(dict(args))

    def on_tool_end(self, span: Span, name: str, result: Any, error: BaseException | None) -> None:
        with self._lock:
            args = self._tool_args.pop(span.span_id, None)
        row = _base_row(span, "tool", time.time(), span.elapsed_s)
        row["module_path"] = name
        row["module_class"] = "Tool"
        row["inputs"] = args
        row["outputs"] = None if error is not None else redact(result)
        _set_error(row, error)
        self._write(row)

    # -- retrieval -------------------------------------------------------------------------
    def on_retrieve_start(self, span: Span, retriever: Any, query: str, k: int) -> None:
        with self._lock:
            self._queries[span.span_id] = {"query": query, "k": k}

    def on_retrieve_end(
        self, span: Span, retriever: Any, passages: Any, error: BaseException | None
    ) -> None:
        with self._lock:
            inputs = self._queries.pop(span.span_id, None)
        row = _base_row(span, "retrieve", time.time(), span.elapsed_s)
        row["module_path"] = span.name
        row["module_class"] = type(retriever).__name__
        row["inputs"] = inputs
        if passages is not None:
            row["outputs"] = {
                "ids": [p.id for p in passages],
                "scores": [p.score for p in passages],
                "passages": [p.text for p in passages],
            }
        _set_error(row, error)
        self._write(row)

    def on_embed_end(
        self, span: Span, embedder: Any, result: Any, error: BaseException | None
    ) -> None:
        row = _base_row(span, "embed", time.time(), span.elapsed_s)
        row["model"] = span.name
        row["module_class"] = type(embedder).__name__
        if result is not None:
            row["inputs"] = {"n": result.n}
            row["prompt_tokens"] = result.usage.prompt_tokens
            row["cost"] = result.usage.cost
            row["cache_hit"] = result.cache_hit
        _set_error(row, error)
        self._write(row)

    # -- LM calls --------------------------------------------------------------------------
    def on_lm_attempt(
        self,
        span: Span,
        lm: Any,
        request: LMRequest,
        attempt: int,
        error: LMError,
        elapsed_s: float,
        retry_in_s: float,
    ) -> None:
        now = time.time()
        row = _base_row(span, "lm_attempt", now, elapsed_s)
        row["span_id"] = f"{span.span_id}.{attempt}"
        row["parent_span_id"] = span.span_id  # the call this attempt belongs to
        row["started_at"] = now - elapsed_s
        row["model"] = request.model
        row["rollout_id"] = None if request.rollout_id is None else str(request.rollout_id)
        row["attempt"] = attempt
        _set_error(row, error, status="retried")
        with self._lock:
            self._attempts[span.span_id] = attempt
            self._attribute(row, span.parent_id)
        self._write(row)

    def on_lm_end(
        self,
        span: Span,
        lm: Any,
        request: LMRequest,
        response: LMResponse | None,
        error: BaseException | None,
    ) -> None:
        row = _base_row(span, "lm", time.time(), span.elapsed_s)
        row["model"] = request.model
        # Plain JSON-native values: the writer's background thread encodes them, off the
        # event loop (the messages are the largest thing a row holds).
        row["messages"] = list(request.messages)
        row["rollout_id"] = None if request.rollout_id is None else str(request.rollout_id)
        if response is not None:
            usage = response.usage
            row["response"] = list(response.outputs)
            row["prompt_tokens"] = usage.prompt_tokens + usage.cached_prompt_tokens
            row["completion_tokens"] = usage.completion_tokens + usage.cached_completion_tokens
            row["cost"] = usage.cost
            row["cache_hit"] = response.cache_hit
        _set_error(row, error)
        with self._lock:
            row["attempt"] = self._attempts.pop(span.span_id, 0) + 1
            owner = self._attribute(row, span.parent_id)
            if owner is not None and response is not None:
                self._pending[span.span_id] = row
                self._by_parent.setdefault(owner.span_id, []).append(span.span_id)
                return
        self._write(row)

    def _attribute(self, row: dict[str, Any], parent: str | None) -> Span | None:
        """Fill in the module that made an LM call; returns its span (call under the lock)."""
        owner = self._modules.get(parent) if parent is not None else None
        if owner is None:
            return None
        owner_span, (mod, _) = owner
        row["predictor"] = owner_span.name or "self"
        row["module_path"] = owner_span.name or "self"
        row["module_class"] = owner_span.module_class
        row["signature"] = _signature_name(mod)
        return owner_span

    def on_adapter_parse(
        self,
        span: Span,
        adapter: Any,
        signature: Any,
        response: LMResponse,
        outputs: list[dict[str, Any]] | None,
        error: BaseException | None,
    ) -> None:
        if response.span_id is None:
            return
        with self._lock:
            row = self._pending.pop(response.span_id, None)
        if row is None:
            return
        if outputs is not None:
            row["outputs"] = outputs
        elif error is not None:
            row["status"] = "error"
            row["error_type"] = "ParseError"
            row["error_message"] = str(error)[:4000]
        self._write(row)

    def _write(self, row: dict[str, Any]) -> None:
        try:
            self.writer.add(row)
        except UserError:  # a straggler finishing after the recording ended: not this run's
            _log.debug("trace row after the recorder closed; dropped")

    def close(self) -> None:
        """Write rows still waiting for a parse, then flush and close the writer."""
        with self._lock:
            rows = list(self._pending.values())
            self._pending.clear()
            self._by_parent.clear()
            self._attempts.clear()
            self._tool_args.clear()
            self._queries.clear()
        for row in rows:
            self._write(row)
        self.writer.close()


def _signature_name(module: Any) -> str | None:
    sig = getattr(module, "signature", None)
    if sig is None:
        return None
    return f"{sig.__name__}({sig.signature})"


@contextmanager
def record(
    run_id: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    *,
    labels: Mapping[str, Any] | None = None,
    flush_rows: int = 5000,
    flush_seconds: float = 2.0,
) -> Iterator[TraceRecorder]:
    """Record every LM and module call inside the block as trace rows of one run.

    Rows land in ``<runs_dir>/traces/run_id=<run_id>/part-*.parquet`` (default runs dir:
    ``$DSPEX_RUNS_DIR``, else ``./dspex-runs``). Recording is scoped to this thread or task
    and the tasks it starts, so concurrent runs never mix.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> with dspex.traces.record(run_id="doc-example") as rec:
        ...     _ = dspex.Predict("q -> a", lm=DummyLM([{"a": "1"}]))(q="?")
        >>> dspex.traces.sql("SELECT kind, count(*) AS n FROM traces "
        ...                  "WHERE run_id = 'doc-example' GROUP BY kind ORDER BY kind").to_pylist()
        [{'kind': 'lm', 'n': 1}, {'kind': 'module', 'n': 1}]
    """
    from dspex.traces._store import TraceWriter, default_runs_dir

    run_id = run_id or new_run_id()
    writer = TraceWriter(
        runs_dir if runs_dir is not None else default_runs_dir(),
        run_id,
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
    )
    recorder = TraceRecorder(writer, run_id)
    overrides: dict[str, Any] = {"callbacks": (*current().callbacks, recorder)}
    if labels:
        overrides["labels"] = dict(labels)
    try:
        with context(**overrides):
            yield recorder
    finally:
        recorder.close()
