"""Values that cross the LM boundary: requests, responses, and the transport protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dspex.primitives._usage import Usage

__all__ = ["LMRequest", "LMResponse", "RawCompletion", "Transport", "token_limit"]

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


def _truncated(finish_reasons: Sequence[str | None]) -> bool:
    return "length" in finish_reasons


@dataclass(frozen=True, slots=True)
class RawCompletion:
    """What a transport returns: the texts of the ``n`` choices and the token counts."""

    texts: Sequence[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: Sequence[str | None] = ()
    model: str | None = None

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
    """

    outputs: list[str]
    usage: Usage
    model: str
    cache_hit: bool = False
    latency_s: float = 0.0
    finish_reasons: Sequence[str | None] = ()
    cache_key: str | None = None
    span_id: str | None = None

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
