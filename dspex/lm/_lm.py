"""``LM``: the client every module calls: cache, retries, usage, history, typed errors.

The core is :meth:`LM.aforward` (asyncio-native). The sync API submits it to dspex's shared
background loop (:func:`dspex._runtime.run_sync`); an ``aforward`` awaited on any other loop
(a user's ``asyncio.run``, a notebook) runs right there, on that loop. What an LM shares
between loops is safe across them: a ``ConcurrencyLimit`` counts under a thread lock, the
table of identical requests in flight hands answers to each waiter's own loop, the OpenAI
transport keeps one connection pool per loop. A transport that is not safe across loops (one
that does not set ``loop_safe = True``: the local transformers model, litellm, a custom one)
still has every call hop onto dspex's loop (:func:`dspex._runtime.run_on_loop`). What
actually talks to a provider is a :class:`~dspex.lm.Transport`: the lean OpenAI-compatible
client for ``openai/...`` models, litellm for every other provider, or any object given as
``transport=`` (the test doubles in ``dspex.testing`` pass their own).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Literal, TextIO

from dspex._jsonable import dumps, loads
from dspex._redact import is_secret_key, redact, redact_text, register_secret
from dspex._runtime import in_loop_thread, run_on_loop, run_sync
from dspex._settings import current
from dspex.callbacks import current_span, emit, observed
from dspex.errors import LMError, UserError
from dspex.lm._cache import Cache, default_cache, request_key
from dspex.lm._history import GLOBAL_HISTORY, HistoryEntry, format_history
from dspex.lm._litellm import LiteLLMTransport
from dspex.lm._openai import OpenAITransport
from dspex.lm._pricing import cost_of, price_of
from dspex.lm._stream import LMStream, StreamChunk, _sink, current_sink
from dspex.lm._types import LMRequest, LMResponse, RawCompletion, Transport
from dspex.primitives._usage import Usage

__all__ = ["LM"]

_log = logging.getLogger("dspex.lm")

# Cache key of a request in flight -> the futures of identical requests waiting for its answer,
# each on its waiter's own loop (calls run on any loop and thread, so a lock guards it). The
# caller that put the key there sends the request and hands the answer to every waiter.
_IN_FLIGHT: dict[str, list[asyncio.Future[RawCompletion | None]]] = {}
_IN_FLIGHT_LOCK = threading.Lock()

TransportName = Literal["auto", "openai", "litellm", "local"]
_TRANSPORT_NAMES = ("auto", "openai", "litellm", "local")
# ``local/<path or hub id>``: a transformers model run in this process (the finetune extra).
_LOCAL_PREFIX = "local/"
# Longest wait we accept from a provider's Retry-After before trying again anyway.
_MAX_RETRY_AFTER_S = 120.0
_HEADER_KWARGS = frozenset({"extra_headers", "headers"})
_CONFIG_KEYS = frozenset(
    {"model", "api_base", "cache", "num_retries", "timeout", "transport", "retry_backoff"}
    | {"history_size", "kwargs"}
)


def _is_credential(key: str) -> bool:
    # ``max_completion_tokens`` and friends look like "token" but are parameters.
    return is_secret_key(key) and not key.endswith("_tokens")


def _resolve_kind(model: str, transport: str) -> str:
    if transport == "auto":
        if model.startswith(_LOCAL_PREFIX):
            return "local"
        return "openai" if model.startswith("openai/") else "litellm"
    return transport


class LM:
    """A language model client: ``lm("prompt")`` returns the completion texts.

    Args:
        model: ``provider/name``, e.g. ``"openai/gpt-4o-mini"`` or
            ``"anthropic/claude-3-5-haiku-latest"``.
        api_key: the provider key; never stored in history, configs, caches or errors.
            When omitted the provider's environment variable is used.
        api_base: the server's base URL, for self-hosted or proxied endpoints.
        cache: ``True`` for the process default cache (see ``configure_cache``), ``False``
            for none, or a :class:`~dspex.lm.Cache`.
        num_retries: how many times a retryable failure (429, 5xx, timeout, dropped
            connection) is retried; a persistent failure makes ``num_retries + 1`` requests.
        timeout: seconds to wait for one request.
        transport: ``"auto"`` (the lean OpenAI client for ``openai/...`` models, litellm
            otherwise), ``"openai"``, ``"litellm"``, or a ``Transport`` object.
        retry_backoff: ``(base, max)`` seconds of exponential backoff between retries.
        history_size: how many calls ``lm.history`` keeps.
        **kwargs: default request parameters: ``temperature``, ``max_tokens``, ``n``, ...

    Example:
        >>> from dspex.lm import LM
        >>> lm = LM("openai/gpt-4o-mini", temperature=0.0, max_tokens=500)
        >>> lm.dump_config()["kwargs"]
        {'temperature': 0.0, 'max_tokens': 500}
        >>> lm("Say hi")  # doctest: +SKIP
        ['Hi!']
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        cache: bool | Cache = True,
        num_retries: int = 3,
        timeout: float = 60.0,
        transport: Transport | TransportName = "auto",
        retry_backoff: tuple[float, float] = (0.5, 30.0),
        history_size: int = 1000,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise UserError(
                f"LM(model=...) needs a model name like 'openai/gpt-4o-mini', got {model!r}."
            )
        if num_retries < 0 or timeout <= 0 or history_size < 0:
            raise UserError("LM needs num_retries >= 0, timeout > 0 and history_size >= 0.")
        if len(retry_backoff) != 2 or min(retry_backoff) < 0:
            raise UserError(
                f"retry_backoff must be (base, max) seconds >= 0, got {retry_backoff!r}."
            )
        if isinstance(transport, str) and transport not in _TRANSPORT_NAMES:
            raise UserError(f"transport must be one of {_TRANSPORT_NAMES} or a Transport object.")
        register_secret(api_key)
        self.model = model
        self.api_base = api_base
        self.cache = cache
        self.num_retries = num_retries
        self.timeout = float(timeout)
        self.retry_backoff = (float(retry_backoff[0]), float(retry_backoff[1]))
        self.history: deque[HistoryEntry] = deque(maxlen=history_size)
        self._api_key = api_key
        # Credentials passed as kwargs (e.g. litellm's aws_secret_access_key) go to the
        # transport only: never into request params, the cache key or the history.
        self._credentials = {k: v for k, v in kwargs.items() if _is_credential(k)}
        for value in self._credentials.values():
            register_secret(value if isinstance(value, str) else None)
        self.kwargs: dict[str, Any] = {
            k: v for k, v in kwargs.items() if k not in self._credentials
        }
        self._transport_spec = transport
        self._transport = self._make_transport()

    def _make_transport(self) -> Transport:
        spec = self._transport_spec
        if not isinstance(spec, str):
            return spec
        kind = _resolve_kind(self.model, spec)
        if kind == "local":
            from dspex.lm._hf import TransformersTransport

            adapter = self.kwargs.get("adapter")
            return TransformersTransport(
                self.model.removeprefix(_LOCAL_PREFIX),
                adapter=str(adapter) if adapter else None,
                device=os.environ.get("DSPEX_DEVICE") or None,
            )
        if kind == "openai":
            if self._credentials:
                raise UserError(
                    f"{self.model}: OpenAI-compatible servers take only api_key; "
                    f"{sorted(self._credentials)} need transport='litellm'."
                )
            return OpenAITransport(api_key=self._api_key, api_base=self.api_base)
        return LiteLLMTransport(api_key=self._api_key, api_base=self.api_base, **self._credentials)

    @property
    def transport(self) -> Transport:
        """The transport that sends this LM's requests."""
        return self._transport

    def __repr__(self) -> str:
        base = f", api_base={redact_text(self.api_base)!r}" if self.api_base else ""
        kwargs = f", kwargs={redact(self.kwargs)!r}" if self.kwargs else ""
        return f"LM(model={self.model!r}{base}{kwargs})"

    def __deepcopy__(self, memo: dict[int, Any]) -> LM:
        # An LM is configuration plus a shared connection pool; copies made while deep-copying
        # a program keep using it. Use ``copy(...)`` for a changed LM.
        return self

    # ----- configuration ---------------------------------------------------------------

    def copy(self, **changes: Any) -> LM:
        """A new LM with some settings or default request params changed.

        Constructor arguments (``model``, ``cache``, ``timeout``, ...) replace the old value;
        anything else updates ``kwargs``, and a kwarg set to ``None`` is removed. The copy
        shares this LM's transport (and so its connections) when the route is unchanged.

        Example:
            >>> from dspex.lm import LM
            >>> hot = LM("openai/gpt-4o-mini", temperature=0.0).copy(temperature=1.0)
            >>> hot.kwargs
            {'temperature': 1.0}
        """
        args: dict[str, Any] = {
            "model": self.model,
            "api_key": self._api_key,
            "api_base": self.api_base,
            "cache": self.cache,
            "num_retries": self.num_retries,
            "timeout": self.timeout,
            "transport": self._transport_spec,
            "retry_backoff": self.retry_backoff,
            "history_size": self.history.maxlen or 0,
        }
        kwargs = {**self.kwargs, **self._credentials}
        for key, value in changes.items():
            if key in args:
                args[key] = value
            elif value is None:
                kwargs.pop(key, None)
            else:
                kwargs[key] = value
        # Validate and normalise through __init__, then carry the result onto a shallow copy,
        # so subclasses (the dspex.testing doubles) keep their type and their shared state.
        template = LM(**args, **kwargs)
        same_route = (
            template._api_key == self._api_key
            and template.api_base == self.api_base
            and template._transport_spec is self._transport_spec
            and template._credentials == self._credentials
            and type(template._transport) is type(self._transport)
        )
        new = copy.copy(self)
        new.__dict__.update(template.__dict__)
        if same_route:
            new._transport = self._transport
        return new

    def dump_config(self) -> dict[str, Any]:
        """A JSON-safe description of this LM, without secrets (no api_key, ever).

        Example:
            >>> from dspex.lm import LM
            >>> LM("openai/gpt-4o-mini", api_key="sk-example-123456789").dump_config()
            {'model': 'openai/gpt-4o-mini', 'api_base': None, 'cache': True, 'num_retries': 3,
             'timeout': 60.0, 'transport': 'auto', 'retry_backoff': [0.5, 30.0],
             'history_size': 1000, 'kwargs': {}}
        """
        spec = self._transport_spec
        return {
            "model": self.model,
            "api_base": redact_text(self.api_base) if self.api_base else None,
            "cache": self.cache is not False,
            "num_retries": self.num_retries,
            "timeout": self.timeout,
            "transport": spec if isinstance(spec, str) else "custom",
            "retry_backoff": list(self.retry_backoff),
            "history_size": self.history.maxlen or 0,
            "kwargs": loads(dumps(redact(self.kwargs))),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> LM:
        """Rebuild an LM from :meth:`dump_config`; secrets come from ``overrides`` or env.

        Example:
            >>> from dspex.lm import LM
            >>> lm = LM("openai/gpt-4o-mini", temperature=0.2)
            >>> LM.from_config(lm.dump_config()).kwargs
            {'temperature': 0.2}
        """
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise UserError(f"Unknown LM config keys {unknown}; expected {sorted(_CONFIG_KEYS)}.")
        args = {k: v for k, v in config.items() if k != "kwargs"}
        args.update(overrides)
        if args.get("transport") == "custom":
            raise UserError(
                "This LM was saved with a custom transport object, which cannot be saved; "
                "pass it again: LM.from_config(config, transport=my_transport)."
            )
        if "retry_backoff" in args:
            args["retry_backoff"] = tuple(args["retry_backoff"])
        return cls(**args, **dict(config.get("kwargs") or {}))

    # ----- calling -----------------------------------------------------------------------

    def __call__(
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Complete a prompt (or chat messages) and return the completion texts.

        Example:
            >>> from dspex.lm import LM
            >>> lm = LM("openai/gpt-4o-mini")
            >>> lm("What is 2+2?", n=2)  # doctest: +SKIP
            ['4', '4']
        """
        return self.forward(_as_messages(prompt, messages), **kwargs).outputs

    async def acall(
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`__call__`."""
        return (await self.aforward(_as_messages(prompt, messages), **kwargs)).outputs

    def astream(self, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> LMStream:
        """Send chat messages and iterate over the answer's text as it arrives.

        Takes :meth:`aforward`'s arguments. The call is the same one (cache, retries before
        the first chunk, usage, history, events); a cache hit yields the cached answer as one
        chunk, a transport that cannot stream yields its whole answer as one chunk. After the
        loop, the stream's ``response`` is the :class:`LMResponse`. Leaving the loop early
        cancels the call and closes its connection.

        Example:
            >>> from dspex.lm import LM
            >>> lm = LM("openai/gpt-4o-mini")
            >>> stream = lm.astream([{"role": "user", "content": "hi"}])
            >>> async for text in stream:  # doctest: +SKIP
            ...     print(text, end="")
        """
        return LMStream(self, messages, kwargs)

    def forward(self, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> LMResponse:
        """Sync :meth:`aforward`, run on dspex's shared event loop (callable from any thread
        other than that loop's, including from inside a user's running asyncio loop)."""
        return run_sync(self.aforward(messages, **kwargs))

    async def aforward(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        rollout_id: int | str | None = None,
        cache: bool | None = None,
        **kwargs: Any,
    ) -> LMResponse:
        """Send chat messages and return the response, from the cache when possible.

        Args:
            messages: OpenAI-style chat messages (``{"role": ..., "content": ...}``).
            rollout_id: makes an otherwise identical request distinct (a new cache entry,
                hence a fresh sample); it is not sent to the provider.
            cache: ``False`` skips the cache for this call (no read, no write).
            **kwargs: request parameters for this call, over the LM's defaults.

        Raises:
            LMError: a typed subclass (rate limit, auth, timeout, ...) once retries are spent.

        Example:
            >>> from dspex.lm import LM
            >>> lm = LM("openai/gpt-4o-mini")
            >>> resp = await lm.aforward([{"role": "user", "content": "hi"}])  # doctest: +SKIP
            >>> resp.outputs, resp.usage.cost  # doctest: +SKIP
            (['Hello!'], 1.2e-06)

        Awaited on any loop, the call runs on that loop, with this task's settings; with a
        transport that is not safe across loops it runs on dspex's shared loop instead (and is
        cancelled there when this task is cancelled).
        """
        return await self._respond(messages, rollout_id=rollout_id, cache=cache, **kwargs)

    async def _respond(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        rollout_id: int | str | None = None,
        cache: bool | None = None,
        **kwargs: Any,
    ) -> LMResponse:
        """What :meth:`aforward` does, under a name subclasses do not override (a
        :class:`~dspex.BaseLM` subclass gives ``forward``/``aforward`` DSPy's meaning)."""
        if not getattr(self._transport, "loop_safe", False) and not in_loop_thread():
            # This transport's state belongs to one loop: hop onto dspex's.
            return await run_on_loop(
                self._respond(messages, rollout_id=rollout_id, cache=cache, **kwargs)
            )
        start = time.perf_counter()
        request, timeout = self._request(messages, rollout_id, kwargs)
        settings = current()
        if settings.lm_limit is not None:
            async with settings.lm_limit:
                return await self._budgeted(request, timeout, cache, start, settings)
        if settings.budget is None and not settings.callbacks:
            # The plain path (no limit, budget or callbacks): two coroutine layers fewer,
            # each of which every resumption of the call would pass through.
            return await self._complete(request, timeout, cache, start)
        return await self._budgeted(request, timeout, cache, start, settings)

    def _adapter_aforward(
        self, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> Awaitable[LMResponse]:
        """What adapters call: :meth:`aforward` (which a subclass may override to intercept
        calls); a :class:`~dspex.BaseLM`, whose ``aforward`` is the user's, calls ``_respond``.

        A plain function returning the call's coroutine: when ``aforward`` is not overridden
        it goes straight to ``_respond``, without two coroutine layers that only pass through.
        """
        if type(self).aforward is LM.aforward:
            return self._respond(messages, **kwargs)
        return self.aforward(messages, **kwargs)

    async def _budgeted(
        self, request: LMRequest, timeout: float, cache: bool | None, start: float, settings: Any
    ) -> LMResponse:
        """``_observed`` under the run's budget, when there is one."""
        if settings.budget is not None:
            settings.budget.check()
            response = await self._observed(request, timeout, cache, start, settings.callbacks)
            settings.budget.charge(response.usage)
            return response
        return await self._observed(request, timeout, cache, start, settings.callbacks)

    async def _observed(
        self,
        request: LMRequest,
        timeout: float,
        cache: bool | None,
        start: float,
        callbacks: tuple[Any, ...],
    ) -> LMResponse:
        """``_complete`` with LM events around it when callbacks are active."""
        if not callbacks:
            return await self._complete(request, timeout, cache, start)
        with observed(callbacks, "lm", self.model, (self, request), (self, request)) as call:
            response = await self._complete(request, timeout, cache, start)
            # The response was made for this call alone; tagging it in place saves a copy.
            object.__setattr__(response, "span_id", call.span.span_id)
            call.result = response
        return response

    async def _complete(
        self, request: LMRequest, timeout: float, cache: bool | None, start: float
    ) -> LMResponse:
        """The cached-or-sent response for a built request."""
        store = self._cache_for(cache)
        if store is None:
            raw = await self._send(request, timeout)
            if raw.truncated:
                _log_truncated(request, raw)
            return self._record(request, raw, None, start, cache_hit=False)
        key = request_key(request)
        waiter = _join_in_flight(key)
        owner = waiter is None
        if waiter is not None:
            # The same request is already on its way (two candidates sharing an example,
            # say): its answer, instead of paying for it twice.
            shared = await waiter
            if shared is not None:
                return self._record(request, shared, key, start, cache_hit=True)
            owner = _retake_in_flight(key)
        answer: RawCompletion | None = None
        try:
            # Looked up holding the key: an identical call that ended meanwhile stored first.
            answer = _cached(store, key)
            if answer is not None:
                return self._record(request, answer, key, start, cache_hit=True)
            answer = await self._send(request, timeout)
            truncated = answer.truncated
            # A truncated answer is never cached: a replay would repeat the cut-off text.
            stored = bool(answer.texts) and not truncated
            if stored:
                # Durability is per context: read in the caller's.
                store.put(key, answer, durable=current().lm_cache_durable)
        finally:
            if owner:
                _publish_in_flight(key, answer)
        if truncated:
            _log_truncated(request, answer)
        return self._record(request, answer, key if stored else None, start, cache_hit=False)

    def _request(
        self,
        messages: Sequence[Mapping[str, Any]],
        rollout_id: int | str | None,
        kwargs: dict[str, Any],
    ) -> tuple[LMRequest, float]:
        """The request ``aforward`` sends for these arguments, and its timeout."""
        timeout = self.timeout
        if kwargs:
            if "timeout" in kwargs:
                timeout = float(kwargs.pop("timeout"))
            _reject_call_credentials(kwargs)
            params = {**self.kwargs, **kwargs}
        else:
            params = dict(self.kwargs)
        if not messages:
            raise UserError("LM calls need at least one message.")
        return LMRequest(self.model, tuple(messages), params, rollout_id), timeout

    async def _send(self, request: LMRequest, timeout: float) -> RawCompletion:
        """One request through the transport, retrying retryable failures with backoff.

        Each failed attempt that is retried is announced to the callbacks (``on_lm_attempt``;
        the trace recorder makes it a row), so retries stay visible, not only the outcome.
        """
        transport = self._transport
        settings = current()
        throttle = settings.lm_throttle
        sink = _sink.get()  # set only while something streams: one read on the plain path
        sent: list[bool] = []  # non-empty once a chunk of this call has been streamed
        attempt = 0
        while True:
            began = time.perf_counter()
            try:
                if throttle is not None:
                    await throttle.acquire()
                    began = time.perf_counter()
                if sink is None:
                    return await transport.complete(request, timeout=timeout)
                return await _stream_once(transport, request, timeout, sink, sent)
            except LMError as exc:
                # Text already streamed cannot be taken back: a retry would repeat it.
                if not exc.retryable or attempt >= self.num_retries or sent:
                    if attempt:
                        exc.add_note(f"(gave up after {attempt + 1} attempts)")
                    raise
                delay = self._backoff(attempt, exc.retry_after)
                if settings.callbacks:
                    elapsed = time.perf_counter() - began
                    _announce_attempt(
                        settings.callbacks, self, request, attempt + 1, exc, elapsed, delay
                    )
            attempt += 1
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_S)
        base, cap = self.retry_backoff
        # Jitter spreads out the clients that failed together so they do not retry together.
        return min(cap, base * 2.0**attempt) * (0.5 + random.random() / 2)

    def _cache_for(self, cache: bool | None) -> Cache | None:
        if cache is False or (cache is None and self.cache is False):
            return None
        if isinstance(self.cache, Cache):
            return self.cache
        return default_cache()

    def _record(
        self,
        request: LMRequest,
        raw: RawCompletion,
        key: str | None,
        start: float,
        *,
        cache_hit: bool,
    ) -> LMResponse:
        if cache_hit:
            sink = current_sink()
            if sink is not None and raw.texts and raw.texts[0]:
                sink.put(StreamChunk(raw.texts[0], self.model, _span_id(), cache_hit=True))
            usage = Usage(
                calls=1,
                cache_hits=1,
                cached_prompt_tokens=raw.prompt_tokens,
                cached_completion_tokens=raw.completion_tokens,
                cost=None if price_of(self.model) is None else 0.0,
            )
        else:
            usage = Usage(
                calls=1,
                prompt_tokens=raw.prompt_tokens,
                completion_tokens=raw.completion_tokens,
                cost=cost_of(self.model, raw.prompt_tokens, raw.completion_tokens),
            )
        latency = time.perf_counter() - start
        outputs = list(raw.texts)
        params = request.kwargs
        if not _HEADER_KWARGS.isdisjoint(params):
            params = redact(dict(params))
        entry = HistoryEntry(
            self.model,
            request.messages,
            params,
            outputs,
            usage,
            time.time(),
            cache_hit,
            latency,
            request.rollout_id,
        )
        self.history.append(entry)
        GLOBAL_HISTORY.append(entry)
        return LMResponse(
            outputs,
            usage,
            self.model,
            cache_hit,
            latency,
            tuple(raw.finish_reasons),
            key,
            tool_calls=tuple(tuple(c) for c in raw.tool_calls) if raw.tool_calls else (),
        )

    # ----- cache control, history, lifecycle ------------------------------------------------

    def evict(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        rollout_id: int | str | None = None,
        cache: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Delete the cached answer of the call ``aforward(messages, **same_args)`` would make.

        Takes exactly the arguments given to :meth:`aforward`, so an adapter that could not
        parse an answer can make sure it is never replayed.

        Example:
            >>> resp = await lm.aforward(messages, temperature=0.0)  # doctest: +SKIP
            >>> if not parses(resp.outputs[0]):  # doctest: +SKIP
            ...     lm.evict(messages, temperature=0.0)
        """
        request, _ = self._request(messages, rollout_id, dict(kwargs))
        self.uncache(request)

    def uncache(self, target: LMResponse | LMRequest) -> None:
        """Delete the cached answer behind a response (or a request) so it is never replayed.

        Example:
            >>> resp = lm.forward(messages)  # doctest: +SKIP
            >>> if not parses(resp.outputs[0]):  # doctest: +SKIP
            ...     lm.uncache(resp)
        """
        key = target.cache_key if isinstance(target, LMResponse) else request_key(target)
        store = self._cache_for(None)
        if key is not None and store is not None:
            store.delete(key)

    def inspect_history(self, n: int = 1, *, file: TextIO | None = None) -> str:
        """Print this LM's last ``n`` calls (redacted) and return the text."""
        text = format_history(self.history, n)
        print(text, file=file or sys.stdout)
        return text

    async def aclose(self) -> None:
        """Release the transport's connections on the running loop (a transport that is not
        safe across loops keeps them on dspex's shared loop, and closes them there)."""
        if not getattr(self._transport, "loop_safe", False) and not in_loop_thread():
            await run_on_loop(self._transport.aclose())
            return
        await self._transport.aclose()

    def close(self) -> None:
        """Release the transport's connections on dspex's shared loop (where sync calls run)."""
        run_sync(self.aclose())


def _span_id() -> str | None:
    span = current_span()
    return span.span_id if span is not None else None


async def _stream_once(
    transport: Transport, request: LMRequest, timeout: float, sink: Any, sent: list[bool]
) -> RawCompletion:
    """One attempt that streams the first choice's text into ``sink`` as it arrives; a
    transport without ``stream`` sends its whole answer as one chunk."""
    model, span_id = request.model, _span_id()

    def on_text(text: str) -> None:
        if not sent:
            sent.append(True)
        sink.put(StreamChunk(text, model, span_id))

    stream = getattr(transport, "stream", None)
    if stream is not None:
        raw: RawCompletion = await stream(request, timeout=timeout, on_text=on_text)
        return raw
    raw = await transport.complete(request, timeout=timeout)
    if raw.texts and raw.texts[0]:
        on_text(raw.texts[0])
    return raw


def _join_in_flight(key: str) -> asyncio.Future[RawCompletion | None] | None:
    """Take ``key`` in the table of requests in flight, or join the identical request there.

    ``None``: the caller holds ``key`` now; it sends the request and publishes the outcome
    (``_publish_in_flight``). Otherwise a future, on the running loop, for that request's
    answer: ``None`` if it failed or was cancelled, and each waiter then makes its own call
    under its own settings (timeout, retries, throttle) rather than inherit another caller's
    error (``_retake_in_flight``). Cancelling a waiter cancels only its own wait.
    """
    with _IN_FLIGHT_LOCK:
        waiters = _IN_FLIGHT.get(key)
        if waiters is None:
            _IN_FLIGHT[key] = []
            return None
        waiter: asyncio.Future[RawCompletion | None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        return waiter


def _retake_in_flight(key: str) -> bool:
    """After the request waited for failed: take ``key`` for our own call, unless another
    caller already has (our call then goes unshared)."""
    with _IN_FLIGHT_LOCK:
        if key in _IN_FLIGHT:
            return False
        _IN_FLIGHT[key] = []
        return True


def _cached(store: Cache, key: str) -> RawCompletion | None:
    hit = store.get(key)
    if hit is not None and hit.truncated:
        store.delete(key)  # written before truncated answers were refused: drop it
        return None
    return hit


def _publish_in_flight(key: str, raw: RawCompletion | None) -> None:
    """Hand the outcome of the request in flight under ``key`` to its waiters and drop it.

    Waiters on this loop get it now; waiters on other loops get it from their own loop's
    thread (``call_soon_threadsafe``); a waiter whose loop has closed waits no more.
    """
    with _IN_FLIGHT_LOCK:
        waiters = _IN_FLIGHT.pop(key, None)
    if not waiters:
        return
    here = asyncio.get_running_loop()
    for waiter in waiters:
        loop = waiter.get_loop()
        if loop is here:
            _settle(waiter, raw)
        else:
            with contextlib.suppress(RuntimeError):  # that loop closed
                loop.call_soon_threadsafe(_settle, waiter, raw)


def _settle(waiter: asyncio.Future[RawCompletion | None], raw: RawCompletion | None) -> None:
    if not waiter.done():  # a cancelled waiter stopped waiting
        waiter.set_result(raw)


def _announce_attempt(
    callbacks: tuple[Any, ...],
    lm: LM,
    request: LMRequest,
    attempt: int,
    error: LMError,
    elapsed_s: float,
    retry_in_s: float,
) -> None:
    span = current_span()  # the LM call's own span, opened by ``_observed``
    if span is not None and span.kind == "lm":
        emit(
            callbacks,
            "on_lm_attempt",
            span,
            lm,
            request,
            attempt,
            error,
            elapsed_s,
            retry_in_s,
        )


def _as_messages(
    prompt: str | None, messages: Sequence[Mapping[str, Any]] | None
) -> Sequence[Mapping[str, Any]]:
    if (prompt is None) == (messages is None):
        raise UserError("Pass exactly one of prompt='...' or messages=[...] to the LM.")
    if prompt is not None:
        return [{"role": "user", "content": prompt}]
    return messages or []


def _log_truncated(request: LMRequest, raw: RawCompletion) -> None:
    limit = request.max_tokens
    where = f"max_tokens={limit}" if limit is not None else "its default token limit"
    cut = sum(1 for r in raw.finish_reasons if r == "length")
    _log.warning(
        "%s stopped at %s in %d of %d completion(s): the answer is truncated and is not cached. "
        "Raise max_tokens (dspex.LM(..., max_tokens=...)) or ask for a shorter answer.",
        request.model,
        where,
        cut,
        len(raw.texts),
    )


def _reject_call_credentials(kwargs: Mapping[str, Any]) -> None:
    bad = sorted(k for k in kwargs if _is_credential(k) or k in ("api_base", "base_url"))
    if bad:
        raise UserError(
            f"{bad} cannot be set per call; they belong to the client. Use "
            f"dspex.LM(..., api_key=..., api_base=...) or lm.copy(api_key=...)."
        )
