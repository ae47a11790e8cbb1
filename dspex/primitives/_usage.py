"""``Usage``: tokens, cost and call counts, summed across LM calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Usage", "UsageSink", "collect_usage", "record_usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """LM usage of one call or of many added together.

    Cache hits are counted but cost nothing: their tokens are reported separately in
    ``cached_prompt_tokens``/``cached_completion_tokens`` and excluded from ``cost``.
    ``cost`` is ``None`` when no price is known for any model involved.
    """

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        cost = (
            None
            if self.cost is None and other.cost is None
            else (self.cost or 0.0) + (other.cost or 0.0)
        )
        return Usage(
            calls=self.calls + other.calls,
            cache_hits=self.cache_hits + other.cache_hits,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
            cached_completion_tokens=self.cached_completion_tokens + other.cached_completion_tokens,
            cost=cost,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UsageSink:
    """The LM usage of one module call, per model, summed as its predictors report it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_model: dict[str, Usage] = {}

    def add(self, model: str, usage: Usage) -> None:
        with self._lock:
            self.by_model[model] = self.by_model.get(model, Usage()) + usage


# The sinks of the module calls in progress here (innermost last). A context variable, so
# threads and asyncio tasks started inside a call (which copy the context) report to it too.
_sinks: ContextVar[tuple[UsageSink, ...]] = ContextVar("dspex_usage_sinks", default=())


@contextmanager
def collect_usage() -> Iterator[UsageSink]:
    """Collect the usage every predictor reports inside the block (nested blocks see it too)."""
    sink = UsageSink()
    token = _sinks.set((*_sinks.get(), sink))
    try:
        yield sink
    finally:
        _sinks.reset(token)


def record_usage(model: str, usage: Usage) -> None:
    """Report one predictor call's usage to every module call in progress around it."""
    for sink in _sinks.get():
        sink.add(model, usage)
