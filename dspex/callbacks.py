"""Events: subscribe to module calls, LM calls, adapter steps, tool calls and evaluations.

Subclass :class:`Callback`, override what you need, and activate it for a block with
``with dspex.context(callbacks=[cb])`` (or process-wide with ``dspex.configure``). Callbacks
live in the settings ``ContextVar``, so concurrent runs in other threads or tasks never see
each other's events. Every event carries a :class:`Span`: its id, the id of the enclosing
call, and the labels in effect (``dspex.context(labels={"stage": ..., "trial": ...})``).

A callback that raises is logged and otherwise ignored: observing a program must never break
it.

Example:
    >>> import dspex
    >>> from dspex.testing import DummyLM
    >>> class Count(dspex.Callback):
    ...     def __init__(self):
    ...         self.lm_calls = 0
    ...     def on_lm_end(self, span, lm, request, response, error):
    ...         self.lm_calls += 1
    >>> count = Count()
    >>> with dspex.context(callbacks=[count]):
    ...     _ = dspex.Predict("q -> a", lm=DummyLM([{"a": "1"}]))(q="?")
    >>> count.lm_calls
    1
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dspex._settings import context, current

if TYPE_CHECKING:
    from dspex.errors import LMError
    from dspex.lm import LM, LMRequest, LMResponse
    from dspex.primitives import Usage

__all__ = ["Callback", "Span", "UsageTracker", "current_span", "tool_span", "track_usage"]

_log = logging.getLogger("dspex.callbacks")

SpanKind = Literal["module", "lm", "adapter", "tool", "evaluate", "retrieve", "embed"]


@dataclass(frozen=True, slots=True)
class Span:
    """One call being observed.

    Attributes:
        span_id: unique id of this call.
        parent_id: the enclosing call's span id (``None`` at the top).
        kind: ``module``, ``lm``, ``adapter``, ``tool``, ``evaluate``, ``retrieve`` or
            ``embed``.
        name: the module path (``draft.predict``), model, tool or adapter name.
        labels: the labels in effect when the call started.
        started_at: wall-clock start, epoch seconds.
        root_paths: module id → dotted path within the top-level program (module spans).
    """

    span_id: str
    parent_id: str | None
    kind: SpanKind
    name: str
    labels: Mapping[str, Any]
    started_at: float
    root_paths: Mapping[int, str] = field(default_factory=dict, repr=False, compare=False)
    module_class: str | None = None
    started_perf: float = field(default=0.0, repr=False, compare=False)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started_perf


class Callback:
    """Base class for event subscribers; every method is a no-op until overridden."""

    def on_module_start(self, span: Span, module: Any, inputs: Mapping[str, Any]) -> None: ...

    def on_module_end(
        self, span: Span, module: Any, outputs: Any, error: BaseException | None
    ) -> None: ...

    def on_lm_start(self, span: Span, lm: LM, request: LMRequest) -> None: ...

    def on_lm_attempt(
        self,
        span: Span,
        lm: LM,
        request: LMRequest,
        attempt: int,
        error: LMError,
        elapsed_s: float,
        retry_in_s: float,
    ) -> None:
        """An attempt of the LM call ``span`` failed and will be retried.

        Called between ``on_lm_start`` and ``on_lm_end``, once per retried attempt
        (``attempt`` counts from 1); the attempt that ends the call, whether it succeeds or
        gives up, is reported by ``on_lm_end``. ``elapsed_s`` is how long the failed attempt
        took and ``retry_in_s`` how long the LM waits before the next.
        """

    def on_lm_end(
        self,
        span: Span,
        lm: LM,
        request: LMRequest,
        response: LMResponse | None,
        error: BaseException | None,
    ) -> None: ...

    def on_adapter_format(
        self, span: Span, adapter: Any, signature: Any, messages: list[dict[str, Any]]
    ) -> None: ...

    def on_adapter_parse(
        self,
        span: Span,
        adapter: Any,
        signature: Any,
        response: LMResponse,
        outputs: list[dict[str, Any]] | None,
        error: BaseException | None,
    ) -> None: ...

    def on_tool_start(self, span: Span, name: str, args: Mapping[str, Any]) -> None: ...

    def on_tool_end(
        self, span: Span, name: str, result: Any, error: BaseException | None
    ) -> None: ...

    def on_retrieve_start(self, span: Span, retriever: Any, query: str, k: int) -> None:
        """A retriever (``dspex.retrievers.Retriever``) starts searching ``query`` for ``k``."""

    def on_retrieve_end(
        self, span: Span, retriever: Any, passages: Any, error: BaseException | None
    ) -> None:
        """The search ended: ``passages`` is its ``list[Passage]`` (``None`` on error)."""

    def on_embed_start(self, span: Span, embedder: Any, model: str, n: int) -> None:
        """An ``Embedder`` starts embedding ``n`` texts with ``model`` (one batch)."""

    def on_embed_end(
        self, span: Span, embedder: Any, result: Any, error: BaseException | None
    ) -> None:
        """The batch ended: ``result`` is an ``EmbedResult`` (usage, cost, cache hit)."""

    def on_evaluate_start(self, span: Span, evaluate: Any, program: Any, n: int) -> None: ...

    def on_evaluate_end(
        self, span: Span, evaluate: Any, result: Any, error: BaseException | None
    ) -> None: ...


_span: ContextVar[Span | None] = ContextVar("dspex_span", default=None)


def current_span() -> Span | None:
    """The innermost call being observed here, if any."""
    return _span.get()


_ID_PREFIX = os.urandom(5).hex()
_id_counter = itertools.count(1)


def _new_id() -> str:
    """Unique per process run (random prefix) and cheap (no syscall per span)."""
    return f"{_ID_PREFIX}{next(_id_counter):x}"


def active() -> tuple[Any, ...]:
    """The callbacks in effect (empty tuple on the fast path)."""
    return current().callbacks


def emit(callbacks: tuple[Any, ...], method: str, *args: Any) -> None:
    """Call ``method`` on every callback, isolating their failures."""
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is None:
            continue
        try:
            fn(*args)
        except Exception:  # a broken observer must not break the program
            _log.exception("dspex callback %s.%s failed", type(cb).__name__, method)


def open_span(
    kind: SpanKind,
    name: str,
    *,
    root_paths: Mapping[int, str] | None = None,
    module_class: str | None = None,
) -> tuple[Span, Any]:
    """Start a span under the current one; returns it and the token to :func:`close_span`."""
    parent = _span.get()
    span = Span(
        span_id=_new_id(),
        parent_id=parent.span_id if parent else None,
        kind=kind,
        name=name,
        labels=current().labels,
        started_at=time.time(),
        root_paths=root_paths if root_paths is not None else (parent.root_paths if parent else {}),
        module_class=module_class,
        started_perf=time.perf_counter(),
    )
    return span, _span.set(span)


def close_span(token: Any) -> None:
    _span.reset(token)


class Observation:
    """What :func:`observed` yields: the open span, and the result the caller sets."""

    __slots__ = ("result", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.result: Any = None


@contextmanager
def observed(
    callbacks: tuple[Any, ...],
    kind: SpanKind,
    name: str,
    start: tuple[Any, ...],
    end: tuple[Any, ...],
    *,
    root_paths: Mapping[int, str] | None = None,
    module_class: str | None = None,
) -> Iterator[Observation]:
    """One observed call (the one way spans are opened, announced and closed): a span around
    the block, ``on_<kind>_start(span, *start)`` before it, and after it
    ``on_<kind>_end(span, *end, result, error)`` with the ``result`` the block set on the
    yielded :class:`Observation` (``None`` on error) and the exception that ended it.

    Example:
        >>> with observed(active(), "tool", "search", ("search", {"q": "x"}), ("search",)) as c:
        ...     c.result = ["a passage"]
    """
    span, token = open_span(kind, name, root_paths=root_paths, module_class=module_class)
    emit(callbacks, f"on_{kind}_start", span, *start)
    call = Observation(span)
    try:
        yield call
    except BaseException as e:
        emit(callbacks, f"on_{kind}_end", span, *end, None, e)
        raise
    finally:
        close_span(token)
    emit(callbacks, f"on_{kind}_end", span, *end, call.result, None)


@contextmanager
def tool_span(name: str, **args: Any) -> Iterator[dict[str, Any]]:
    """Observe a tool call: ``with tool_span("search", query=q) as out: out["result"] = ...``."""
    callbacks = active()
    if not callbacks:
        yield {}
        return
    out: dict[str, Any] = {}
    with observed(callbacks, "tool", name, (name, args), (name,)) as call:
        yield out
        call.result = out.get("result")


class UsageTracker(Callback):
    """Sums the LM usage of every call made while it is active; see :func:`track_usage`."""

    def __init__(self) -> None:
        from dspex.primitives import Usage  # here: primitives imports this module

        self._empty = Usage()
        self._lock = threading.Lock()
        self._total = Usage()
        self._by_model: dict[str, Usage] = {}
        self._by_stage: dict[str, Usage] = {}

    def on_lm_end(
        self,
        span: Span,
        lm: LM,
        request: LMRequest,
        response: LMResponse | None,
        error: BaseException | None,
    ) -> None:
        if response is None:
            return
        with self._lock:
            self._total = self._total + response.usage
            model = request.model
            self._by_model[model] = self._by_model.get(model, self._empty) + response.usage
            stage = str(span.labels.get("stage", "none"))
            self._by_stage[stage] = self._by_stage.get(stage, self._empty) + response.usage

    def on_embed_end(
        self, span: Span, embedder: Any, result: Any, error: BaseException | None
    ) -> None:
        # Embedding batches (dspex.Embedder) bill prompt tokens like LM calls do.
        usage = getattr(result, "usage", None)
        if usage is None:
            return
        with self._lock:
            self._total = self._total + usage
            model = str(result.model)
            self._by_model[model] = self._by_model.get(model, self._empty) + usage
            stage = str(span.labels.get("stage", "none"))
            self._by_stage[stage] = self._by_stage.get(stage, self._empty) + usage

    @property
    def total(self) -> Usage:
        """Everything so far: calls, cache hits (counted, free), tokens and cost."""
        return self._total

    @property
    def by_model(self) -> dict[str, Usage]:
        with self._lock:
            return dict(self._by_model)

    @property
    def by_stage(self) -> dict[str, Usage]:
        """Usage per ``stage`` label (``dspex.context(labels={"stage": ...})``)."""
        with self._lock:
            return dict(self._by_stage)


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """Count LM usage inside a block, across every module, thread-safe and scoped to it.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> with dspex.track_usage() as usage:
        ...     _ = dspex.Predict("q -> a", lm=DummyLM([{"a": "1"}]))(q="?")
        >>> usage.total.calls
        1
    """
    tracker = UsageTracker()
    with context(callbacks=(*current().callbacks, tracker)):
        yield tracker
