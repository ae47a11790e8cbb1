"""Ambient settings: ``dspex.configure(...)``, ``with dspex.context(...)`` and ``dspex.settings``.

Resolution order: an explicit argument beats the innermost ``context``, which beats the
process defaults set by ``configure``. Contexts live in a ``ContextVar``, so they are private
to the thread or asyncio task that entered them (and to the tasks it starts), and two threads
using two LMs each see their own. ``configure`` replaces the process defaults atomically; any
thread may call it (unlike DSPy, where only the first thread may configure).

Every setting DSPy 3.4 has is accepted under its name (``lm``, ``adapter``, ``track_usage``,
``callbacks``, ``num_threads``, ``max_errors``, ...), and ``dspex.settings.<name>`` reads the
value in effect, as ``dspy.settings.<name>`` does. A name that is neither dspex's nor DSPy's
raises :class:`~dspex.errors.UnknownSettingError` naming the closest one.
"""

from __future__ import annotations

import dataclasses
import difflib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dspex.errors import ConfigurationError, UnknownSettingError

if TYPE_CHECKING:
    from dspex.adapters import Adapter
    from dspex.lm import LM
    from dspex.lm._budget import Budget
    from dspex.lm._limit import ConcurrencyLimit, Throttle

__all__ = ["DSPY_ONLY", "Settings", "configure", "context", "current", "settings"]


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
        num_threads: how many examples ``Evaluate`` and ``Module.batch`` run at once when
            they are not told; ``None``: their own defaults (16 and 8).
        max_errors: failed examples after which ``Evaluate`` and ``Module.batch`` stop when
            they are not told; ``None``: ``Evaluate`` never stops, ``batch`` stops at 10.
        provide_traceback: log the traceback of each example that fails in ``Evaluate``.
        rm: the retriever that ``dspex.Retrieve`` uses when it is not given one (any
            ``dspex.retrievers.Retriever``, or a DSPy-style callable ``rm(query, k=k)``).

    The other fields are DSPy's settings of the same names, accepted so that DSPy code runs
    and readable as ``dspex.settings.<name>``; dspex itself does not use them (see
    :data:`DSPY_ONLY` for why each one is not needed).
    """

    lm: LM | None = None
    adapter: Adapter | None = None
    callbacks: tuple[Any, ...] = ()
    labels: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget | None = None
    lm_limit: ConcurrencyLimit | None = None
    lm_throttle: Throttle | None = None
    lm_cache_durable: bool | None = None
    num_threads: int | None = None
    max_errors: int | None = None
    provide_traceback: bool = False
    # DSPy's settings that dspex accepts but does not use (DSPY_ONLY says why); DSPy's defaults.
    rm: Any = None
    track_usage: bool = False
    async_max_workers: int = 8
    branch_idx: int = 0
    trace: Any = None
    send_stream: Any = None
    disable_history: bool = False
    usage_tracker: Any = None
    caller_predict: Any = None
    caller_modules: Any = None
    stream_listeners: tuple[Any, ...] = ()
    allow_tool_async_sync_conversion: bool = False
    max_history_size: int = 10000
    max_trace_size: int = 10000
    warn_on_type_mismatch: bool = True
    interpreter_factory: Any = None

    def require_lm(self) -> LM:
        if self.lm is None:
            raise ConfigurationError(
                "No LM is configured. Pass one explicitly (dspex.Predict(..., lm=lm)), or call "
                "dspex.configure(lm=dspex.LM('openai/gpt-4o-mini')) once, or wrap the call in "
                "`with dspex.context(lm=...)`."
            )
        return self.lm


DSPY_ONLY: Mapping[str, str] = {
    "track_usage": "predictions always carry their LM usage (Prediction.get_lm_usage())",
    "async_max_workers": "async calls run on dspex's event loop, bounded by lm_limit",
    "branch_idx": "DSPy-internal",
    "trace": "module traces go to dspex.traces; optimizers collect their own",
    "send_stream": "DSPy-internal (streaming)",
    "disable_history": "LM history is bounded by LM(history_size=...)",
    "usage_tracker": "use `with dspex.track_usage() as tracker:`",
    "caller_predict": "DSPy-internal",
    "caller_modules": "DSPy-internal",
    "stream_listeners": "DSPy-internal (streaming)",
    "allow_tool_async_sync_conversion": "DSPy's tool option",
    "max_history_size": "LM history is bounded by LM(history_size=...)",
    "max_trace_size": "DSPy-internal",
    "warn_on_type_mismatch": "DSPy's input-type warning",
    "interpreter_factory": "code runs in dspex's sandbox",
}
"""DSPy's settings that dspex accepts (and ``dspex.settings`` reads back) without using, and
what dspex does instead."""

_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings))
_TUPLES = ("callbacks", "stream_listeners")
_defaults_lock = threading.Lock()
_defaults = Settings()
_current: ContextVar[Settings | None] = ContextVar("dspex_settings", default=None)


def _check(kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - _FIELDS)
    if unknown:
        names = sorted(_FIELDS)
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=1)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        raise UnknownSettingError(
            f"Unknown setting(s) {', '.join(hints)}; known settings (dspex's and DSPy's) are "
            f"{names}."
        )
    for key in ("num_threads", "max_errors"):
        value = kwargs.get(key)
        low = 1 if key == "num_threads" else 0
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigurationError(f"{key}={value!r}: use an int >= {low}, or None.")
        if value is not None and value < low:
            raise ConfigurationError(f"{key}={value!r}: use an int >= {low}, or None.")


def _normalized(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Lists become tuples, so a frozen Settings never shares a list a caller may mutate.
    for key in _TUPLES:
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key] or ())
    return kwargs


def current() -> Settings:
    """The settings in effect here: the innermost context, else the process defaults."""
    return _current.get() or _defaults


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``dspex.configure(lm=dspex.LM("openai/gpt-4o-mini"))``.

    Contexts entered with :func:`context` still take precedence where they are active. Any
    thread may call it.

    Raises:
        UnknownSettingError: a name that is neither a dspex nor a DSPy setting (the message
            names the closest one).
    """
    global _defaults
    _check(kwargs)
    kwargs = _normalized(dict(kwargs))
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
    kwargs = _normalized(dict(kwargs))
    base = current()
    if "labels" in kwargs:
        kwargs["labels"] = {**base.labels, **kwargs["labels"]}
    new = dataclasses.replace(base, **kwargs)
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)


class _SettingsView:
    """``dspex.settings``: reads the settings in effect here, as ``dspy.settings`` does.

    It holds no state of its own: every read goes to :func:`current`, so a context entered
    in one thread is invisible to another. ``dspex.settings.x = v`` is
    ``dspex.configure(x=v)``, as in DSPy.

    Example:
        >>> import dspex
        >>> with dspex.settings.context(num_threads=4):
        ...     dspex.settings.num_threads, dspex.settings["num_threads"]
        (4, 4)
    """

    __slots__ = ()

    configure = staticmethod(configure)
    context = staticmethod(context)

    def __getattr__(self, name: str) -> Any:
        if name in _FIELDS:
            return getattr(current(), name)
        raise AttributeError(f"dspex.settings has no setting {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        configure(**{name: value})

    def __getitem__(self, name: str) -> Any:
        if name not in _FIELDS:
            raise KeyError(name)
        return getattr(current(), name)

    def __setitem__(self, name: str, value: Any) -> None:
        configure(**{name: value})

    def __contains__(self, name: object) -> bool:
        return name in _FIELDS

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(current(), name) if name in _FIELDS else default

    def copy(self) -> dict[str, Any]:
        """The settings in effect here, as a dict (DSPy's ``settings.copy()``)."""
        now = current()
        return {f.name: getattr(now, f.name) for f in dataclasses.fields(now)}

    @property
    def config(self) -> dict[str, Any]:
        return self.copy()

    def __repr__(self) -> str:
        return f"dspex.settings({self.copy()!r})"


settings = _SettingsView()
