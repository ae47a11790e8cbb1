"""Ambient settings: ``dspex.configure(...)`` and ``with dspex.context(...)``.

Resolution order: an explicit argument beats the innermost ``context``, which beats the
process defaults set by ``configure``. Contexts live in a ``ContextVar``, so they are private
to the thread or asyncio task that entered them (and to the tasks it starts), and two threads
using two LMs each see their own. ``configure`` replaces the process defaults atomically; any
thread may call it (unlike DSPy, where only the first thread may configure).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dspex.errors import ConfigurationError

if TYPE_CHECKING:
    from dspex.adapters import Adapter
    from dspex.lm import LM
    from dspex.lm._budget import Budget
    from dspex.lm._limit import ConcurrencyLimit, Throttle

__all__ = ["Settings", "configure", "context", "current"]


@dataclass(frozen=True)
class Settings:
    """The ambient settings; frozen, so a context can never change another's view.

    Attributes:
        lm: the LM that predictors without their own LM use.
        adapter: how signatures become prompts (``ChatAdapter`` when ``None``).
        callbacks: event subscribers (see ``dspex.callbacks``).
        labels: free-form labels attached to traces, e.g. ``{"stage": "bootstrap"}``.
        budget: caps on LM calls, tokens and cost (``dspex.lm.Budget``).
        lm_limit: at most N LM calls in flight (``dspex.lm.ConcurrencyLimit``).
        lm_throttle: awaited before each request sent (``dspex.lm.Throttle``), e.g. a rate
            limit shared by every worker of a deployment.
        lm_cache_durable: ``True``: each LM cache write made here commits to disk before the
            call returns (a killed run loses no finished call); ``False``: writes are batched;
            ``None``: the cache's own default (``Cache(durable=...)``).
    """

    lm: LM | None = None
    adapter: Adapter | None = None
    callbacks: tuple[Any, ...] = ()
    labels: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget | None = None
    lm_limit: ConcurrencyLimit | None = None
    lm_throttle: Throttle | None = None
    lm_cache_durable: bool | None = None

    def require_lm(self) -> LM:
        if self.lm is None:
            raise ConfigurationError(
                "No LM is configured. Pass one explicitly (dspex.Predict(..., lm=lm)), or call "
                "dspex.configure(lm=dspex.LM('openai/gpt-4o-mini')) once, or wrap the call in "
                "`with dspex.context(lm=...)`."
            )
        return self.lm


_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings))
_defaults_lock = threading.Lock()
_defaults = Settings()
_current: ContextVar[Settings | None] = ContextVar("dspex_settings", default=None)


def _check(kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - _FIELDS)
    if unknown:
        raise ConfigurationError(
            f"Unknown setting(s) {unknown}; known settings are {sorted(_FIELDS)}."
        )


def current() -> Settings:
    """The settings in effect here: the innermost context, else the process defaults."""
    return _current.get() or _defaults


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``dspex.configure(lm=dspex.LM("openai/gpt-4o-mini"))``.

    Contexts entered with :func:`context` still take precedence where they are active.
    """
    global _defaults
    _check(kwargs)
    if "labels" in kwargs:
        kwargs["labels"] = dict(kwargs["labels"])
    with _defaults_lock:
        _defaults = dataclasses.replace(_defaults, **kwargs)


@contextmanager
def context(**kwargs: Any) -> Iterator[Settings]:
    """Override settings inside a ``with`` block, for this thread or task only.

    Example:
        >>> import dspex
        >>> with dspex.context(labels={"stage": "demo"}) as s:
        ...     s.labels["stage"]
        'demo'
    """
    _check(kwargs)
    base = current()
    if "labels" in kwargs:
        kwargs["labels"] = {**base.labels, **kwargs["labels"]}
    if "callbacks" in kwargs:
        kwargs["callbacks"] = tuple(kwargs["callbacks"])
    new = dataclasses.replace(base, **kwargs)
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)
