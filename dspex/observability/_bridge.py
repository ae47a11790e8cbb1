"""``SpanBridge``: dspex's events as a tree of spans in another tracing system.

dspex's callbacks already give every call a span id and its parent's id (``dspex.callbacks``).
The bridge keeps the other system's span for each open dspex span, so a child is started under
its parent wherever (thread, event loop) it runs. Adapter steps are events, not spans, in
dspex: the bridge makes one adapter span from the format event to the parse event of a module
call and starts the LM calls made in between under it::

    module ChainOfThought            (the program)
    └── module predict               (its predictor)
        └── adapter ChatAdapter      (format ... parse)
            └── chat gpt-4o-mini     (the LM call, its retries as events)

Subclasses say how a span starts, ends and records an event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from dspex.callbacks import Callback, Span
from dspex.observability._attributes import (
    AttributeValue,
    label_attributes,
    lm_request_attributes,
    lm_response_attributes,
    module_attributes,
    provider_of,
    request_model,
    usage_attributes,
)

if TYPE_CHECKING:
    from dspex.errors import LMError
    from dspex.lm import LM, LMRequest, LMResponse

__all__ = ["Kind", "SpanBridge"]

_log = logging.getLogger("dspex.observability")

Kind = Literal["module", "adapter", "lm", "tool", "evaluate", "retrieve", "embed"]
Attributes = dict[str, AttributeValue]


class SpanBridge(Callback):
    """Base class of the exporters: subclasses implement ``_start``, ``_end`` and ``_event``.

    ``content`` handed to ``_start``/``_end`` is the raw value of the call (a module's inputs
    and its Prediction, an LM request and response, ...); a subclass records it only when
    asked to, and redacted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: dict[str, Any] = {}  # open dspex span id -> the backend's span
        self._adapters: dict[str | None, list[Any]] = {}  # module span id -> open adapters
        self._refused: set[str] = set()  # open calls left out (see ``_accepts``)

    # -- what a backend implements ---------------------------------------------------------
    def _start(
        self,
        kind: Kind,
        name: str,
        parent: Any | None,
        attributes: Attributes,
        content: Any,
        started_at: float | None,
    ) -> Any:
        raise NotImplementedError

    def _end(
        self,
        kind: Kind,
        handle: Any,
        attributes: Attributes,
        content: Any,
        error: BaseException | None,
    ) -> None:
        raise NotImplementedError

    def _event(self, handle: Any, name: str, attributes: Attributes) -> None:
        raise NotImplementedError

    def _accepts(self, span: Span) -> bool:
        """Whether to export a call with no exported parent (a root, or a call whose parent
        started before this bridge was active); one refused here leaves its whole tree out."""
        return True

    # -- the tree --------------------------------------------------------------------------
    def _open(
        self, span: Span, kind: Kind, name: str, attributes: Attributes, content: Any
    ) -> None:
        with self._lock:
            if span.parent_id is not None and span.parent_id in self._refused:
                self._refused.add(span.span_id)  # the whole tree of a refused call stays out
                return
            parent = self._parent_of(span, kind)
        if parent is None and not self._accepts(span):
            with self._lock:
                self._refused.add(span.span_id)
            return
        attributes.update(label_attributes(span))
        handle = self._start(kind, name, parent, attributes, content, span.started_at)
        with self._lock:
            self._spans[span.span_id] = handle

    def _parent_of(self, span: Span, kind: Kind) -> Any | None:
        """The backend span to start ``span`` under (call holding the lock)."""
        if span.parent_id is None:
            return None
        if kind == "lm":  # an LM call made between an adapter's format and parse
            stack = self._adapters.get(span.parent_id)
            if stack:
                return stack[-1]
        return self._spans.get(span.parent_id)

    def _close(
        self,
        span: Span,
        kind: Kind,
        attributes: Attributes,
        content: Any,
        error: BaseException | None,
    ) -> None:
        with self._lock:
            handle = self._spans.pop(span.span_id, None)
            adapters = self._adapters.pop(span.span_id, [])
            self._refused.discard(span.span_id)
        if handle is None:
            return
        for adapter in reversed(adapters):  # a call that failed before its answer was parsed
            self._safe_end("adapter", adapter, {}, None, error)
        self._safe_end(kind, handle, attributes, content, error)

    def _safe_end(
        self,
        kind: Kind,
        handle: Any,
        attributes: Attributes,
        content: Any,
        error: BaseException | None,
    ) -> None:
        try:
            self._end(kind, handle, attributes, content, error)
        except Exception:  # an exporter's failure must not leave the caller's span open
            _log.exception("ending a %s span failed", kind)

    # -- modules ---------------------------------------------------------------------------
    def on_module_start(self, span: Span, module: Any, inputs: Mapping[str, Any]) -> None:
        name = span.name or span.module_class or type(module).__name__
        self._open(span, "module", name, module_attributes(span, module), dict(inputs))

    def on_module_end(
        self, span: Span, module: Any, outputs: Any, error: BaseException | None
    ) -> None:
        usage = getattr(outputs, "usage", None) if outputs is not None else None
        self._close(span, "module", usage_attributes(usage), outputs, error)

    # -- adapters --------------------------------------------------------------------------
    def on_adapter_format(
        self, span: Span | None, adapter: Any, signature: Any, messages: list[dict[str, Any]]
    ) -> None:
        key = span.span_id if span is not None else None
        with self._lock:
            parent = self._spans.get(key) if key is not None else None
        if key is not None and parent is None:
            return  # its module is not exported
        name = type(adapter).__name__
        attrs: Attributes = {"dspex.span.kind": "adapter", "dspex.adapter": name}
        if span is not None:
            attrs.update(label_attributes(span))
        handle = self._start("adapter", name, parent, attrs, messages, None)
        self._event(handle, "format", {"dspex.adapter.messages": len(messages)})
        with self._lock:
            self._adapters.setdefault(key, []).append(handle)

    def on_adapter_parse(
        self,
        span: Span | None,
        adapter: Any,
        signature: Any,
        response: LMResponse,
        outputs: list[dict[str, Any]] | None,
        error: BaseException | None,
    ) -> None:
        key = span.span_id if span is not None else None
        with self._lock:
            stack = self._adapters.get(key)
            handle = stack.pop() if stack else None
        if handle is None:
            return
        parsed: Attributes = {"dspex.adapter.parsed": error is None}
        self._event(handle, "parse", parsed)
        self._safe_end("adapter", handle, parsed, outputs, error)

    # -- LM calls --------------------------------------------------------------------------
    def on_lm_start(self, span: Span, lm: LM, request: LMRequest) -> None:
        name = f"chat {request.model.split('/', 1)[-1]}"
        self._open(span, "lm", name, lm_request_attributes(lm, request), request)

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
        with self._lock:
            handle = self._spans.get(span.span_id)
        if handle is None:
            return
        attrs: Attributes = {
            "dspex.lm.attempt": attempt,
            "error.type": type(error).__name__,
            "dspex.lm.retry_in_s": retry_in_s,
        }
        status = getattr(error, "status", None)
        if isinstance(status, int) and not isinstance(status, bool):
            attrs["http.response.status_code"] = status
        self._event(handle, "retry", attrs)

    def on_lm_end(
        self,
        span: Span,
        lm: LM,
        request: LMRequest,
        response: LMResponse | None,
        error: BaseException | None,
    ) -> None:
        attrs = lm_response_attributes(response) if response is not None else {}
        self._close(span, "lm", attrs, (request, response), error)

    # -- tools ---------------------------------------------------------------------------
    def on_tool_start(self, span: Span, name: str, args: Mapping[str, Any]) -> None:
        attrs: Attributes = {
            "dspex.span.kind": "tool",
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
        }
        self._open(span, "tool", f"execute_tool {name}", attrs, dict(args))

    def on_tool_end(self, span: Span, name: str, result: Any, error: BaseException | None) -> None:
        self._close(span, "tool", {}, result, error)

    # -- retrieval -------------------------------------------------------------------------
    def on_retrieve_start(self, span: Span, retriever: Any, query: str, k: int) -> None:
        attrs: Attributes = {
            "dspex.span.kind": "retrieve",
            "dspex.retriever": type(retriever).__name__,
            "dspex.retrieve.k": k,
        }
        self._open(span, "retrieve", f"retrieve {span.name}", attrs, {"query": query, "k": k})

    def on_retrieve_end(
        self, span: Span, retriever: Any, passages: Any, error: BaseException | None
    ) -> None:
        attrs: Attributes = {}
        found = None
        if passages is not None:
            found = [
                {"id": p.id, "text": p.text, "score": p.score, "metadata": dict(p.metadata)}
                for p in passages
            ]
            attrs["dspex.retrieve.passages"] = len(found)
        self._close(span, "retrieve", attrs, found, error)

    def on_embed_start(self, span: Span, embedder: Any, model: str, n: int) -> None:
        attrs: Attributes = {
            "dspex.span.kind": "embed",
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": request_model(model),
            "dspex.embed.texts": n,
        }
        if "/" in model:  # a hosted or local model; a callable's name says no provider
            attrs["gen_ai.provider.name"] = provider_of(model)
        self._open(span, "embed", f"embeddings {request_model(model)}", attrs, None)

    def on_embed_end(
        self, span: Span, embedder: Any, result: Any, error: BaseException | None
    ) -> None:
        attrs: Attributes = {}
        if result is not None:
            attrs["gen_ai.usage.input_tokens"] = result.usage.prompt_tokens
            attrs["dspex.embed.cache_hit"] = bool(result.cache_hit)
            if result.usage.cost is not None:
                attrs["dspex.usage.cost"] = float(result.usage.cost)
        self._close(span, "embed", attrs, None, error)

    # -- evaluations -----------------------------------------------------------------------
    def on_evaluate_start(self, span: Span, evaluate: Any, program: Any, n: int) -> None:
        attrs: Attributes = {"dspex.span.kind": "evaluate", "dspex.evaluate.examples": n}
        self._open(span, "evaluate", f"evaluate {span.name}", attrs, {"examples": n})

    def on_evaluate_end(
        self, span: Span, evaluate: Any, result: Any, error: BaseException | None
    ) -> None:
        attrs: Attributes = {}
        score = getattr(result, "score", None)
        if isinstance(score, int | float) and not isinstance(score, bool):
            attrs["dspex.evaluate.score"] = float(score)
        summary = None if result is None else {"score": score, "n": getattr(result, "n", None)}
        self._close(span, "evaluate", attrs, summary, error)
