"""``BaseLM``: the class a user subclasses for a custom LM, as in DSPy.

A subclass implements ``forward(prompt=None, messages=None, **kwargs)`` (and/or the async
``aforward``) returning an OpenAI-shaped chat completion. dspex never treats that method as
its own entry point: adapters and ``lm(...)`` go through :meth:`LM._respond`, which sends the
request through a private transport (:class:`_UserTransport`) that calls the user's method.
So a custom LM gets everything a :class:`~dspex.LM` has: the cache, retries, usage, history,
callbacks and traces, limits and budgets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from dspex._redact import redact, redact_text
from dspex._runtime import run_sync
from dspex._settings import context, current
from dspex.errors import LMError, LMServerError, LMTimeoutError, UserError
from dspex.lm._lm import _CONFIG_KEYS, LM, _as_messages
from dspex.lm._types import LMRequest, LMResponse, LMToolCall, RawCompletion, tool_calls_of

__all__ = ["BaseLM"]

# ``LM.__init__`` arguments a BaseLM also accepts by keyword (DSPy's BaseLM has none of them,
# so they never clash with a request parameter a DSPy program passes).
_LM_OPTIONS = ("api_key", "api_base", "timeout", "retry_backoff", "history_size")


class BaseLM(LM):
    """Subclass this for a custom LM: implement ``forward`` (or ``aforward``), as in DSPy.

    ``forward(prompt=None, messages=None, **kwargs)`` returns an OpenAI-shaped chat completion
    (an object or a dict): ``choices[i].message.content``, optionally ``finish_reason``,
    ``usage.prompt_tokens``/``usage.completion_tokens`` and ``model``. dspex calls it with
    ``messages`` (and ``prompt=None``) and the request parameters as keyword arguments. A
    sync ``forward`` runs in a worker thread, so it never blocks an event loop; define
    ``aforward`` (same arguments, ``async``) to run on the loop instead. Each method keeps
    DSPy's meaning on a ``BaseLM``: ``lm.forward(...)`` returns your raw response, while
    ``lm(...)``, ``acall`` and every module go through dspex's cache, retries and history.

    Args:
        model: the model name (recorded in history, usage and traces).
        model_type: DSPy's ``"chat"`` (other values are stored but change nothing).
        temperature: the default temperature, passed to ``forward`` as a keyword.
        max_tokens: the default token limit, passed to ``forward`` as a keyword.
        cache: as for ``dspex.LM``: ``True``, ``False`` or a ``dspex.lm.Cache``.
        num_retries: how many times a failing ``forward`` is retried.
        callbacks: callbacks that observe this LM's calls (on top of the context's).
        **kwargs: default request parameters, passed to ``forward``; ``api_key``,
            ``api_base``, ``timeout``, ``retry_backoff`` and ``history_size`` are the
            ``dspex.LM`` options of the same names.

    Raises:
        LMError: (on a call) an exception raised by ``forward``, as ``LMServerError`` with the
            exception as its ``__cause__``, once retries are spent; an ``LMError`` it raises
            passes through unchanged (a non-retryable one is not retried).

    Example:
        >>> import dspex
        >>> class Echo(dspex.BaseLM):
        ...     def forward(self, prompt=None, messages=None, **kwargs):
        ...         text = messages[-1]["content"]
        ...         return {"choices": [{"message": {"content": text}}], "model": self.model}
        >>> Echo("echo", cache=False)("hello")
        ['hello']
    """

    def __init__(
        self,
        model: str,
        model_type: str = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: Any = True,
        num_retries: int = 3,
        callbacks: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        options = {k: kwargs.pop(k) for k in _LM_OPTIONS if k in kwargs}
        options.setdefault("timeout", 600.0)
        # DSPy keeps temperature/max_tokens in kwargs even when None; None is left out here
        # (forward gets only what was set), as dspex.LM treats a None parameter as unset.
        params = {"temperature": temperature, "max_tokens": max_tokens, **kwargs}
        params = {k: v for k, v in params.items() if v is not None}
        super().__init__(
            model,
            cache=cache,
            num_retries=num_retries,
            transport=_UserTransport(self),
            **options,
            **params,
        )
        self.model_type = model_type
        self.callbacks = list(callbacks or [])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    # ----- what a subclass implements ------------------------------------------------------

    def forward(  # type: ignore[override]
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Return an OpenAI-shaped chat completion for ``messages``; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward or aforward.")

    async def aforward(  # type: ignore[override]
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The async ``forward``; by default runs ``forward`` in a worker thread."""
        return await asyncio.to_thread(self.forward, prompt=prompt, messages=messages, **kwargs)

    # ----- dspex's entry points --------------------------------------------------------------

    def __call__(
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Complete a prompt (or chat messages) through the cache and retries: the texts."""
        return run_sync(self._respond(_as_messages(prompt, messages), **kwargs)).outputs

    async def acall(
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`__call__`."""
        return (await self._respond(_as_messages(prompt, messages), **kwargs)).outputs

    async def _adapter_aforward(
        self, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> LMResponse:
        return await self._respond(messages, **kwargs)

    async def _respond(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        rollout_id: int | str | None = None,
        cache: bool | None = None,
        **kwargs: Any,
    ) -> LMResponse:
        if not self.callbacks:
            return await super()._respond(messages, rollout_id=rollout_id, cache=cache, **kwargs)
        with context(callbacks=(*current().callbacks, *self.callbacks)):
            return await super()._respond(messages, rollout_id=rollout_id, cache=cache, **kwargs)

    # ----- configuration ---------------------------------------------------------------------

    def copy(self, **changes: Any) -> BaseLM:
        """A new LM with some settings changed (DSPy's ``copy``): an attribute of this LM
        (``model_type``, ``callbacks``, one of your own) is set on the copy; anything else
        updates ``kwargs`` (``None`` removes a parameter). The copy has its own history."""
        own = {k: changes.pop(k) for k in list(changes) if _is_own_attribute(self, k)}
        new = super().copy(**changes)
        if not isinstance(new, BaseLM):  # pragma: no cover - LM.copy keeps the type
            raise TypeError(type(new).__name__)
        new.callbacks = list(self.callbacks)
        for key, value in own.items():
            setattr(new, key, value)
        # The transport calls the instance it belongs to: the copy's forward, not this one's.
        new._transport = _UserTransport(new)
        new._transport_spec = new._transport
        return new

    def dump_config(self) -> dict[str, Any]:
        """:meth:`LM.dump_config` plus ``lm_class``, the subclass's import path."""
        return {**super().dump_config(), "lm_class": _class_path(type(self))}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> LM:
        """Not available: a custom LM is rebuilt by constructing it."""
        raise UserError(
            f"A custom LM ({config.get('lm_class', cls.__name__)}) cannot be rebuilt from its "
            "config; construct it again, e.g. MyLM(model=...), and pass it to the program."
        )

    def dump_state(self) -> dict[str, Any]:
        """DSPy's ``dump_state``: what rebuilds this LM, without secrets.

        Example:
            >>> import dspex
            >>> class Echo(dspex.BaseLM):
            ...     def forward(self, prompt=None, messages=None, **kwargs): ...
            >>> Echo("echo", temperature=0.0).dump_state()
            {'model': 'echo', 'model_type': 'chat', 'cache': True, 'num_retries': 3, \
'temperature': 0.0}
        """
        return {
            "model": self.model,
            "model_type": self.model_type,
            "cache": self.cache is not False,
            "num_retries": self.num_retries,
            **redact(self.kwargs),
        }

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> BaseLM:
        """Rebuild from :meth:`dump_state` by calling this class (secrets come from you).

        Unlike DSPy's, it never imports a class named in the state: call it on your class,
        ``MyLM.load_state(state)``.
        """
        return cls(**state)


def _is_own_attribute(lm: BaseLM, key: str) -> bool:
    """Whether ``copy(key=...)`` sets an attribute rather than a request parameter."""
    if key in ("model_type", "callbacks"):
        return True
    if key in _CONFIG_KEYS or key == "api_key" or key in lm.kwargs:
        return False
    return key in vars(lm)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _implements(lm: BaseLM, name: str) -> bool:
    return getattr(type(lm), name) is not getattr(BaseLM, name)


class _UserTransport:
    """The ``Transport`` behind a ``BaseLM``: calls the user's ``forward``/``aforward``.

    A sync ``forward`` runs in a worker thread, which any loop may await (``loop_safe``); a
    user's ``aforward`` may hold loop-bound clients, so it runs on dspex's loop.
    """

    name = "custom"

    def __init__(self, lm: BaseLM) -> None:
        self.lm = lm
        self.loop_safe = not _implements(lm, "aforward")

    def __repr__(self) -> str:
        return f"_UserTransport({type(self.lm).__name__})"

    def __copy__(self) -> _UserTransport:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _UserTransport:
        return self

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        """Call the user's method; wrap what it raises in a retryable ``LMServerError``."""
        lm = self.lm
        if not (_implements(lm, "forward") or _implements(lm, "aforward")):
            raise UserError(f"{type(lm).__name__} must implement forward (or aforward).")
        params = dict(request.kwargs)
        messages = [dict(m) for m in request.messages]
        try:
            response = await asyncio.wait_for(
                lm.aforward(prompt=None, messages=messages, **params), timeout
            )
        except LMError:
            raise
        except TimeoutError as exc:
            raise LMTimeoutError(
                f"{request.model}: {type(lm).__name__}.forward gave no answer within "
                f"{timeout:g}s. Raise timeout= if the model is just slow.",
                model=request.model,
            ) from exc
        except Exception as exc:
            raise LMServerError(
                f"{request.model}: {type(lm).__name__}.forward raised "
                f"{type(exc).__name__}: {redact_text(str(exc))}",
                model=request.model,
            ) from exc
        return _completion(response, type(lm).__name__)

    async def aclose(self) -> None:
        """Nothing to release: the user's LM owns its clients."""


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: OpenAI responses come as objects or as dicts."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _completion(response: Any, owner: str) -> RawCompletion:
    """An OpenAI-shaped chat completion as a ``RawCompletion``."""
    choices = _field(response, "choices")
    if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
        raise UserError(
            f"{owner}.forward must return an OpenAI-shaped chat completion with a non-empty "
            "'choices' list, e.g. {'choices': [{'message': {'content': '...'}}]}; got "
            f"{type(response).__name__}."
        )
    texts: list[str] = []
    reasons: list[str | None] = []
    calls: list[tuple[LMToolCall, ...]] = []
    for choice in choices:
        message = _field(choice, "message")
        content = _field(message, "content") if message is not None else _field(choice, "text")
        texts.append("" if content is None else str(content))
        reasons.append(_field(choice, "finish_reason"))
        calls.append(tool_calls_of(message))
    usage = _field(response, "usage")
    model = _field(response, "model")
    return RawCompletion(
        texts=texts,
        prompt_tokens=int(_field(usage, "prompt_tokens", 0) or 0) if usage is not None else 0,
        completion_tokens=int(_field(usage, "completion_tokens", 0) or 0)
        if usage is not None
        else 0,
        finish_reasons=reasons,
        model=model if isinstance(model, str) else None,
        tool_calls=calls if any(calls) else (),
    )
