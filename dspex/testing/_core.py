"""What every test double shares: the reply record, fault injection, hashing and counters.

A *responder* (the simulator or the script) turns an ``LMRequest`` into a :class:`Reply`
synchronously and cheaply; the in-process transport, the litellm provider and the HTTP server
each turn that reply into their own wire format (an exception, a litellm response, an HTTP
status). Keeping the decision synchronous is what lets the HTTP server stay fast.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dspex._jsonable import canonical_json
from dspex.errors import UserError
from dspex.lm._types import LMRequest, LMToolCall
from dspex.testing._prompt import message_text

__all__ = ["Counters", "Faults", "Reply", "Responder", "prompt_digest", "unit_hash"]

FaultKind = Literal["rate_limit", "server_error", "hang"]
# Malformed and truncated answers are still answers: the reply carries the bad text.
DrawnFault = Literal["rate_limit", "server_error", "hang", "malformed", "truncated"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A responder's answer to one request: texts, or a fault to raise instead.

    Attributes:
        texts: one text per requested choice (``n``).
        prompt_tokens / completion_tokens: rough counts (characters / 4).
        finish_reasons: ``"stop"``, or ``"length"`` for a truncated answer.
        fault: ``"rate_limit"`` (HTTP 429), ``"server_error"`` (500) or ``"hang"`` (no answer
            until the caller's timeout); ``None`` for a normal answer.
        retry_after: seconds to announce with a rate limit.
        tool_calls: per choice, the function calls the answer makes (native function
            calling); ``()`` when none does.
    """

    texts: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: tuple[str, ...] = ()
    fault: FaultKind | None = None
    retry_after: float | None = None
    tool_calls: tuple[tuple[LMToolCall, ...], ...] = ()


class Responder(Protocol):
    """Turns a request into a :class:`Reply`; implemented by the simulator and the script."""

    latency: float

    def reply(self, request: LMRequest) -> Reply: ...

    @property
    def request_count(self) -> int: ...


@dataclass(frozen=True)
class Faults:
    """Fault rates for ``SimulatedLM``: each request draws at most one fault, by hash.

    The draw mixes in how many times the same request was seen before, so a retried request
    can succeed while a re-run of the whole program sees the same faults again.

    Attributes:
        rate_429: share of requests answered with HTTP 429 carrying ``Retry-After``.
        retry_after: the seconds announced in ``Retry-After``.
        rate_500: share answered with HTTP 500.
        rate_hang: share that never answer (the caller's timeout fires).
        rate_malformed: share answered with text that has no field markers.
        rate_truncated: share answered with text cut off mid-answer (finish reason "length").

    Example:
        >>> Faults(rate_429=0.1, retry_after=0.5).rate_429
        0.1
        >>> Faults.from_string("429=0.1,retry_after=2,malformed=0.05").rate_malformed
        0.05
    """

    rate_429: float = 0.0
    retry_after: float = 0.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    rate_malformed: float = 0.0
    rate_truncated: float = 0.0

    def __post_init__(self) -> None:
        rates = self._rates()
        if any(not 0.0 <= r <= 1.0 for r in rates.values()) or sum(rates.values()) > 1.0:
            raise UserError(
                f"Faults rates must each be in [0, 1] and add up to at most 1; got {rates}."
            )
        if self.retry_after < 0:
            raise UserError(f"Faults(retry_after={self.retry_after}) must be >= 0.")

    def _rates(self) -> dict[DrawnFault, float]:
        return {
            "hang": self.rate_hang,
            "rate_limit": self.rate_429,
            "server_error": self.rate_500,
            "malformed": self.rate_malformed,
            "truncated": self.rate_truncated,
        }

    @property
    def any(self) -> bool:
        """Whether any fault can happen at all."""
        return sum(self._rates().values()) > 0

    def draw(self, u: float) -> DrawnFault | None:
        """The fault for a uniform draw ``u`` in [0, 1), or ``None``."""
        edge = 0.0
        for kind, rate in self._rates().items():
            edge += rate
            if u < edge:
                return kind
        return None

    @classmethod
    def from_string(cls, spec: str) -> Faults:
        """Parse ``"429=0.1,500=0.02,hang=0,malformed=0.05,truncated=0,retry_after=1"``."""
        names = {"429": "rate_429", "500": "rate_500", "hang": "rate_hang"}
        names |= {"malformed": "rate_malformed", "truncated": "rate_truncated"}
        values: dict[str, float] = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, raw = item.partition("=")
            field = names.get(key.strip(), key.strip())
            if not sep or field not in cls.__dataclass_fields__:
                raise UserError(f"Unknown fault {item!r}; use e.g. '429=0.1,retry_after=1'.")
            try:
                values[field] = float(raw)
            except ValueError:
                raise UserError(f"Fault {item!r}: {raw!r} is not a number.") from None
        return cls(**values)


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) from a stable hash of ``parts`` (same in every process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def prompt_digest(messages: Sequence[Mapping[str, Any]], kwargs: Mapping[str, Any]) -> str:
    """A stable digest of the messages and the parameters that change an answer."""
    h = hashlib.blake2b(digest_size=12)
    for m in messages:
        h.update(str(m.get("role", "")).encode())
        h.update(b"\x00")
        h.update(message_text(m).encode())
        h.update(b"\x01")
    fmt = kwargs.get("response_format")
    if fmt:
        h.update(canonical_json(fmt))
    return h.hexdigest()


def rough_tokens(text: str) -> int:
    """A rough token count: a token is about four characters of English."""
    return max(1, len(text) // 4) if text else 0


class Counters:
    """Thread-safe counters of requests, tokens and per-request attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._attempts: dict[str, int] = {}

    def start(self, key: str) -> int:
        """Count a request; return how many times this ``key`` was seen before."""
        with self._lock:
            self.requests += 1
            seen = self._attempts.get(key, 0)
            self._attempts[key] = seen + 1
            return seen

    def add_tokens(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
