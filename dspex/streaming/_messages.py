"""What a streamed program yields besides its final ``Prediction``, and the status callback.

:class:`StreamResponse` is one piece of an output field; :class:`StatusMessage` a line of
progress that a :class:`StatusMessageProvider` writes for module, LM and tool starts and ends.
:class:`StatusStreamingCallback` is the ``dspex.Callback`` that turns those events into
status messages for one streamed call, and that tells which predictor made each LM chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dspex._redact import redact
from dspex.callbacks import Callback, Span

if TYPE_CHECKING:
    from dspex.lm import LM, LMRequest, LMResponse
    from dspex.lm._stream import ChunkSink

__all__ = [
    "StatusMessage",
    "StatusMessageProvider",
    "StatusStreamingCallback",
    "StreamResponse",
    "ToolRef",
]


@dataclass
class StreamResponse:
    """A piece of one output field of one predictor, as the LM wrote it.

    Attributes:
        predict_name: the predictor's name in the program (``named_predictors()``).
        signature_field_name: the output field.
        chunk: the new text of the field's value.
        is_last_chunk: the field's value is complete.
    """

    predict_name: str
    signature_field_name: str
    chunk: str
    is_last_chunk: bool


@dataclass
class StatusMessage:
    """A progress message from the :class:`StatusMessageProvider`."""

    message: str


@dataclass(frozen=True)
class ToolRef:
    """The tool a status message is about (what ``tool_start_status_message`` receives)."""

    name: str


class StatusMessageProvider:
    """Writes the status messages of a streamed program; subclass it to change them.

    Each method returns the message, or ``None`` for no message. By default only tool calls
    are announced.

    Example:
        >>> import dspex
        >>> from dspex.streaming import StatusMessageProvider
        >>> class Verbose(StatusMessageProvider):
        ...     def lm_start_status_message(self, instance, inputs):
        ...         return f"Asking {instance.model}..."
        >>> program = dspex.streamify(dspex.Predict("q -> a"), status_message_provider=Verbose())
    """

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before a tool runs (``instance.name`` is its name)."""
        return f"Calling tool {instance.name}..."

    def tool_end_status_message(self, outputs: Any) -> str | None:
        """After a tool ran."""
        return "Tool calling finished! Querying the LLM with tool calling results..."

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before a module (a ``Predict`` too) runs."""
        return None

    def module_end_status_message(self, outputs: Any) -> str | None:
        """After a module ran."""
        return None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before an LM call (``inputs``: the messages and request parameters)."""
        return None

    def lm_end_status_message(self, outputs: Any) -> str | None:
        """After an LM call (``outputs``: the completion texts, ``None`` if it failed)."""
        return None


class StatusStreamingCallback(Callback):
    """Sends status messages of one streamed call to its sink, and maps spans to predictors.

    ``streamify`` makes one per call; it is active only in that call's context, so it never
    sees another call's events. The span tables let each LM chunk be routed to the
    predictor (and adapter) that made it.
    """

    def __init__(
        self,
        status_message_provider: StatusMessageProvider | None = None,
        sink: ChunkSink | None = None,
    ) -> None:
        self.status_message_provider = status_message_provider or StatusMessageProvider()
        self.sink = sink
        self._lock = threading.Lock()
        self._parents: dict[str, str | None] = {}
        self._modules: dict[str, Any] = {}
        self._adapters: dict[str, Any] = {}

    def _send(self, message: str | None) -> None:
        if message and self.sink is not None:
            self.sink.put(StatusMessage(message))

    # -- which predictor made a chunk ----------------------------------------------------
    def owner_of(self, span_id: str | None) -> tuple[Any, Any]:
        """The innermost module (and the adapter it used) around the span ``span_id``."""
        with self._lock:
            seen = 0
            while span_id is not None and seen < 1000:
                module = self._modules.get(span_id)
                if module is not None:
                    return module, self._adapters.get(span_id)
                span_id = self._parents.get(span_id)
                seen += 1
        return None, None

    def _enter(self, span: Span, module: Any = None) -> None:
        with self._lock:
            self._parents[span.span_id] = span.parent_id
            if module is not None:
                self._modules[span.span_id] = module

    # -- events ----------------------------------------------------------------------------
    def on_module_start(self, span: Span, module: Any, inputs: Mapping[str, Any]) -> None:
        self._enter(span, module)
        provider = self.status_message_provider
        self._send(provider.module_start_status_message(module, dict(inputs)))

    def on_module_end(
        self, span: Span, module: Any, outputs: Any, error: BaseException | None
    ) -> None:
        self._send(self.status_message_provider.module_end_status_message(outputs))

    def on_adapter_format(
        self, span: Span, adapter: Any, signature: Any, messages: list[dict[str, Any]]
    ) -> None:
        if span is not None:
            with self._lock:
                self._adapters[span.span_id] = adapter

    def on_lm_start(self, span: Span, lm: LM, request: LMRequest) -> None:
        self._enter(span)
        # The provider's text may go to whoever reads the stream: no header or key in it.
        inputs = {"messages": list(request.messages), **redact(dict(request.kwargs))}
        self._send(self.status_message_provider.lm_start_status_message(lm, inputs))

    def on_lm_end(
        self,
        span: Span,
        lm: LM,
        request: LMRequest,
        response: LMResponse | None,
        error: BaseException | None,
    ) -> None:
        outputs = response.outputs if response is not None else None
        self._send(self.status_message_provider.lm_end_status_message(outputs))

    def on_tool_start(self, span: Span, name: str, args: Mapping[str, Any]) -> None:
        self._enter(span)
        if name == "finish":  # ReAct's way to stop: not a tool call worth announcing
            return
        provider = self.status_message_provider
        self._send(provider.tool_start_status_message(ToolRef(name), dict(args)))

    def on_tool_end(self, span: Span, name: str, result: Any, error: BaseException | None) -> None:
        if name == "finish":
            return
        self._send(self.status_message_provider.tool_end_status_message(result))
