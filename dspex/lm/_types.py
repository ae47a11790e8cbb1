"""Values that cross the LM boundary: requests, responses, and the transport protocol."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dspex.primitives._usage import Usage

__all__ = [
    "LMRequest",
    "LMResponse",
    "LMToolCall",
    "RawCompletion",
    "StreamingTransport",
    "Transport",
    "token_limit",
    "tool_calls_of",
]

Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LMRequest:
    """One chat-completion request, as sent (minus credentials, which the transport holds).

    ``kwargs`` are provider parameters: temperature, max_tokens, n, response_format, ...
    ``rollout_id`` distinguishes otherwise identical requests (a fresh sample, a new cache key);
    it is not sent to the provider.
    """

    model: str
    messages: tuple[Message, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    rollout_id: int | str | None = None

    @property
    def max_tokens(self) -> int | None:
        """The completion-token limit this request sets (``None``: the provider's default)."""
        return token_limit(self.kwargs)


def token_limit(params: Mapping[str, Any]) -> int | None:
    """The completion-token limit in request parameters (``max_tokens`` or
    ``max_completion_tokens``), or ``None`` when they leave it to the provider."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


@dataclass(frozen=True, slots=True)
class LMToolCall:
    """One function call a model asked for (OpenAI's ``message.tool_calls[i]``).

    ``arguments`` is the JSON text the provider sent, unparsed: parsing (leniently) is the
    adapter's job, and the text is what the cache stores. ``id`` is the provider's call id.
    """

    name: str
    arguments: str = "{}"
    id: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The call in OpenAI's wire format."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def tool_calls_of(message: Any) -> tuple[LMToolCall, ...]:
    """The function calls in an OpenAI-shaped assistant message (a dict or an SDK object);
    ``()`` when it has none. Arguments given as a dict are kept as JSON text."""
    calls = _get(message, "tool_calls") if message is not None else None
    if not calls or isinstance(calls, str | bytes) or not isinstance(calls, Sequence):
        return ()
    found = []
    for call in calls:
        function = _get(call, "function")
        name = _get(function, "name") if function is not None else _get(call, "name")
        if not isinstance(name, str) or not name:
            continue
        arguments = _get(function, "arguments") if function is not None else None
        if arguments is None:
            arguments = _get(call, "arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        call_id = _get(call, "id")
        found.append(LMToolCall(name, arguments, call_id if isinstance(call_id, str) else None))
    return tuple(found)


def _truncated(finish_reasons: Sequence[str | None]) -> bool:
    return "length" in finish_reasons


@dataclass(frozen=True, slots=True)
class RawCompletion:
    """What a transport returns: the texts of the ``n`` choices and the token counts.

    ``tool_calls`` holds, per choice, the function calls the model asked for (native function
    calling); it is ``()`` when no choice has any.
    """

    texts: Sequence[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: Sequence[str | None] = ()
    model: str | None = None
    tool_calls: Sequence[Sequence[LMToolCall]] = ()

    @property
    def truncated(self) -> bool:
        """Whether a choice stopped at the token limit (finish reason ``"length"``)."""
        return _truncated(self.finish_reasons)


@dataclass(frozen=True, slots=True)
class LMResponse:
    """What ``LM.forward``/``LM.aforward`` return.

    ``cache_key`` identifies the cache entry holding this answer (``None`` when the call
    bypassed the cache or the answer was truncated, which is never cached);
    ``LM.uncache(response)`` deletes it, e.g. when the answer could not be parsed and must not
    be replayed. ``span_id`` identifies the call in events and traces when it was observed.
    ``tool_calls`` holds each choice's native function calls (``()`` when there are none).
    """

    outputs: list[str]
    usage: Usage
    model: str
    cache_hit: bool = False
    latency_s: float = 0.0
    finish_reasons: Sequence[str | None] = ()
    cache_key: str | None = None
    span_id: str | None = None
    tool_calls: Sequence[Sequence[LMToolCall]] = ()

    @property
    def truncated(self) -> bool:
        """Whether a choice stopped at the token limit (finish reason ``"length"``); such a
        response is never cached."""
        return _truncated(self.finish_reasons)


class Transport(Protocol):
    """Sends a request to a provider. Implementations raise ``dspex.errors.LMError`` subclasses
    (typed by status) and never put credentials in exception text.

    A transport whose ``complete`` may be awaited on any event loop, from any thread, sets a
    class attribute ``loop_safe = True`` (``OpenAITransport`` keeps a connection pool per loop);
    an ``LM`` then runs calls on the loop that awaits them. Without it, an ``LM`` runs every
    call on dspex's one shared loop, so a transport holding loop-bound state (an asyncio
    queue, a client made on one loop) is only ever used there.
    """

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion: ...

    async def aclose(self) -> None: ...


class StreamingTransport(Transport, Protocol):
    """A transport that can stream: ``stream`` sends the request asking for a stream, calls
    ``on_text`` with each new piece of the first choice's text as it arrives, and returns the
    whole completion (with its usage) like ``complete``. Stopping early (the task cancelled)
    must release the connection. An ``LM`` uses it when a chunk sink is active (see
    ``dspex.lm._stream``); a transport without it sends its whole answer as one chunk.
    """

    async def stream(
        self, request: LMRequest, *, timeout: float, on_text: Callable[[str], None]
    ) -> RawCompletion: ...
