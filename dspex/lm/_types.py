"""Values that cross the LM boundary: requests, responses, and the transport protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dspex.primitives._usage import Usage

__all__ = ["LMRequest", "LMResponse", "RawCompletion", "Transport"]

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


@dataclass(frozen=True, slots=True)
class RawCompletion:
    """What a transport returns: the texts of the ``n`` choices and the token counts."""

    texts: Sequence[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: Sequence[str | None] = ()
    model: str | None = None


@dataclass(frozen=True, slots=True)
class LMResponse:
    """What ``LM.forward``/``LM.aforward`` return.

    ``cache_key`` identifies the cache entry holding this answer (``None`` when the call
    bypassed the cache); ``LM.uncache(response)`` deletes it, e.g. when the answer could not
    be parsed and must not be replayed. ``span_id`` identifies the call in events and traces
    when it was observed.
    """

    outputs: list[str]
    usage: Usage
    model: str
    cache_hit: bool = False
    latency_s: float = 0.0
    finish_reasons: Sequence[str | None] = ()
    cache_key: str | None = None
    span_id: str | None = None


class Transport(Protocol):
    """Sends a request to a provider. Implementations raise ``dspex.errors.LMError`` subclasses
    (typed by status) and never put credentials in exception text."""

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion: ...

    async def aclose(self) -> None: ...
