"""OpenTelemetry spans for dspex calls: :class:`OpenTelemetryCallback`, :func:`instrument`."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from dspex._redact import redact_text
from dspex._settings import configure
from dspex._version import __version__
from dspex.errors import ConfigurationError
from dspex.observability._attributes import content_json, input_messages, output_messages
from dspex.observability._bridge import Attributes, Kind, SpanBridge

if TYPE_CHECKING:
    from opentelemetry.trace import Span as OTelSpan
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["OpenTelemetryCallback", "instrument", "is_instrumented", "uninstrument"]

INSTALL_HINT = "pip install 'dspex[otel]'"
# The variable OpenTelemetry's GenAI instrumentations read to record prompts and completions.
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def _import_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as e:
        raise ConfigurationError(
            f"OpenTelemetry tracing needs opentelemetry-api, which is not installed ({e}). "
            f"Install it with: {INSTALL_HINT} (and an exporter, e.g. "
            "opentelemetry-exporter-otlp for OTLP)."
        ) from None
    return trace


def _capture_from_env() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes")


class OpenTelemetryCallback(SpanBridge):
    """A callback that emits an OpenTelemetry span for every module, adapter, LM, tool and
    evaluation call, parent/child linked.

    LM spans follow the GenAI semantic conventions (``gen_ai.request.model``,
    ``gen_ai.usage.input_tokens``, ...; see ``docs/observability.md``). Prompts, completions,
    inputs and outputs are recorded only with ``capture_content=True`` (default: the
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` variable), and always redacted.

    Args:
        tracer_provider: where spans go; ``None``: OpenTelemetry's global provider (set with
            ``opentelemetry.trace.set_tracer_provider``), read when each span starts.
        capture_content: record inputs and outputs as span attributes.

    Example:
        >>> import dspex
        >>> from dspex.observability import OpenTelemetryCallback
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter,
        ... )
        >>> exporter = InMemorySpanExporter()
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
        >>> from dspex.testing import DummyLM
        >>> with dspex.context(callbacks=[OpenTelemetryCallback(provider)]):
        ...     _ = dspex.Predict("q -> a", lm=DummyLM([{"a": "1"}]))(q="?")
        >>> sorted(s.name for s in exporter.get_finished_spans())
        ['ChatAdapter', 'Predict', 'chat script']
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, capture_content: bool | None = None
    ) -> None:
        super().__init__()
        trace = _import_trace()
        self._trace = trace
        self._provider = tracer_provider
        self._tracer: Tracer | None = None
        self.capture_content = _capture_from_env() if capture_content is None else capture_content

    @property
    def tracer(self) -> Tracer:
        if self._tracer is None:
            self._tracer = self._trace.get_tracer(
                "dspex", __version__, tracer_provider=self._provider
            )
        return self._tracer

    def _start(
        self,
        kind: Kind,
        name: str,
        parent: Any | None,
        attributes: Attributes,
        content: Any,
        started_at: float | None,
    ) -> OTelSpan:
        trace = self._trace
        # A root joins the caller's current trace (an HTTP request span, say).
        context = trace.set_span_in_context(parent) if parent is not None else None
        span_kind = trace.SpanKind.CLIENT if kind == "lm" else trace.SpanKind.INTERNAL
        if self.capture_content:
            attributes = {**attributes, **_input_content(kind, content)}
        start_ns = int(started_at * 1e9) if started_at is not None else None
        span: OTelSpan = self.tracer.start_span(
            name, context=context, kind=span_kind, attributes=attributes, start_time=start_ns
        )
        return span

    def _end(
        self,
        kind: Kind,
        handle: Any,
        attributes: Attributes,
        content: Any,
        error: BaseException | None,
    ) -> None:
        span: OTelSpan = handle
        if attributes:
            span.set_attributes(attributes)
        if self.capture_content and error is None and content is not None:
            span.set_attributes(_output_content(kind, content))
        if error is not None:
            # Not record_exception: its message and stack text are not redacted.
            message = redact_text(str(error))[:2000]
            span.set_attribute("error.type", type(error).__name__)
            span.add_event(
                "exception",
                {"exception.type": type(error).__name__, "exception.message": message},
            )
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, message))
        span.end()

    def _event(self, handle: Any, name: str, attributes: Attributes) -> None:
        span: OTelSpan = handle
        span.add_event(name, attributes)


def _input_content(kind: Kind, content: Any) -> Attributes:
    if content is None:
        return {}
    if kind == "lm":
        return {"gen_ai.input.messages": input_messages(content)}
    if kind == "tool":
        return {"gen_ai.tool.call.arguments": content_json(content)}
    if kind == "adapter":
        return {}  # the messages it formats are the LM span's gen_ai.input.messages
    return {"dspex.inputs": content_json(content)}


def _output_content(kind: Kind, content: Any) -> Attributes:
    if kind == "lm":
        _, response = content
        return {} if response is None else {"gen_ai.output.messages": output_messages(response)}
    if kind == "tool":
        return {"gen_ai.tool.call.result": content_json(content)}
    if kind == "module" and hasattr(content, "to_dict"):
        return {"dspex.outputs": content_json(content.to_dict())}
    return {"dspex.outputs": content_json(content)}


_installed_lock = threading.Lock()
_installed: OpenTelemetryCallback | None = None


def instrument(
    tracer_provider: TracerProvider | None = None, *, capture_content: bool | None = None
) -> OpenTelemetryCallback:
    """Emit OpenTelemetry spans for every dspex call in this process, until
    :func:`uninstrument`.

    Adds an :class:`OpenTelemetryCallback` to the process-wide callbacks
    (``dspex.configure(callbacks=...)``); calling it again replaces the previous one. A block
    under ``dspex.context(callbacks=[...])`` that names its own callbacks replaces these too:
    add the returned callback to that list to keep tracing there.

    Args:
        tracer_provider: the provider whose processors export the spans (OTLP, console, ...);
            ``None``: OpenTelemetry's global one.
        capture_content: record prompts, completions, inputs and outputs (redacted); default:
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

    Raises:
        ConfigurationError: opentelemetry-api is not installed (the message says how).

    Example:
        >>> import dspex.observability
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> callback = dspex.observability.instrument(TracerProvider())
        >>> callback in dspex.settings.callbacks
        True
        >>> dspex.observability.uninstrument()
        >>> callback in dspex.settings.callbacks
        False
    """
    global _installed
    callback = OpenTelemetryCallback(tracer_provider, capture_content=capture_content)
    with _installed_lock:
        others = tuple(cb for cb in _defaults_callbacks() if cb is not _installed)
        configure(callbacks=(*others, callback))
        _installed = callback
    return callback


def uninstrument() -> None:
    """Stop what :func:`instrument` started; spans already started still end and export."""
    global _installed
    with _installed_lock:
        if _installed is None:
            return
        configure(callbacks=tuple(cb for cb in _defaults_callbacks() if cb is not _installed))
        _installed = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect (a later ``dspex.configure(callbacks=...)``
    that left its callback out ended it)."""
    installed = _installed
    return installed is not None and installed in _defaults_callbacks()


def _defaults_callbacks() -> tuple[Any, ...]:
    """The process-wide callbacks (what ``configure`` set), not a context's."""
    from dspex import _settings

    return tuple(_settings._defaults.callbacks)
