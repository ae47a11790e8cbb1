"""Streaming at the LM layer: where a call's text goes while it arrives.

An LM call streams when a *chunk sink* is active in its context (:func:`stream_to`): the
transport asks the provider for a stream (``stream=true``) and the LM puts one
:class:`StreamChunk` per text delta of the first choice into the sink, while the call still
returns the whole :class:`~dspex.lm.LMResponse` (usage, trace row, cache entry) as usual.
A cache hit puts the cached answer as one chunk; a transport that cannot stream (a local
model, a custom one) puts its whole answer as one chunk once it has it. Without a sink,
nothing here runs: the non-streaming path costs one ``ContextVar`` read.

:meth:`LM.astream <dspex.lm.LM.astream>` is the direct entry (an async iterator of text
deltas); ``dspex.streamify`` is the program-level one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dspex.lm._types import LMToolCall, RawCompletion

if TYPE_CHECKING:
    from dspex.lm._lm import LM
    from dspex.lm._types import LMResponse

__all__ = [
    "ChunkSink",
    "LMStream",
    "QueueSink",
    "StreamAssembler",
    "StreamChunk",
    "current_sink",
    "stream_to",
]

TextCallback = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One piece of an LM call's answer (the first choice's text), as it arrived.

    Attributes:
        text: the new text (a delta, not the text so far).
        model: the LM's model name.
        span_id: the LM call's span when callbacks observe it (``dspex.callbacks``): it ties
            a chunk to the module that made the call.
        cache_hit: the chunk is a whole cached answer.
    """

    text: str
    model: str
    span_id: str | None = None
    cache_hit: bool = False

    @property
    def choices(self) -> list[ChunkChoice]:
        """The chunk as the OpenAI SDK and litellm shape a streamed piece, which DSPy
        programs read: ``chunk.choices[0].delta.content`` is :attr:`text`."""
        return [ChunkChoice(ChunkDelta(self.text))]


@dataclass(frozen=True, slots=True)
class ChunkDelta:
    """``choices[0].delta`` of a :class:`StreamChunk`: the new text as ``content``."""

    content: str
    role: str = "assistant"


@dataclass(frozen=True, slots=True)
class ChunkChoice:
    """``choices[0]`` of a :class:`StreamChunk`."""

    delta: ChunkDelta
    index: int = 0
    finish_reason: str | None = None


class ChunkSink(Protocol):
    """Receives :class:`StreamChunk` values; ``put`` is called from any thread and must not
    block (the LM calls it from its event loop)."""

    def put(self, item: Any) -> None: ...


_sink: ContextVar[ChunkSink | None] = ContextVar("dspex_chunk_sink", default=None)


def current_sink() -> ChunkSink | None:
    """The chunk sink LM calls made here stream into (``None``: they do not stream)."""
    return _sink.get()


@contextlib.contextmanager
def stream_to(sink: ChunkSink | None) -> Iterator[None]:
    """Stream the LM calls made inside the block into ``sink`` (``None``: stop streaming)."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


class QueueSink:
    """A sink feeding an ``asyncio.Queue`` of the loop that made it, from any thread."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def put(self, item: Any) -> None:
        if threading.get_ident() == self._thread:
            self.queue.put_nowait(item)
        else:  # an LM call on dspex's own loop, or a sync module in a worker thread
            with contextlib.suppress(RuntimeError):  # the consumer's loop has closed
                self._loop.call_soon_threadsafe(self.queue.put_nowait, item)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


class StreamAssembler:
    """Builds the whole completion from ``chat.completion.chunk`` values (dicts or SDK objects).

    Example:
        >>> asm = StreamAssembler()
        >>> asm.add({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
        'Hi'
        >>> _ = asm.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        >>> asm.result().texts
        ['Hi']
    """

    def __init__(self) -> None:
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}
        self._calls: dict[int, dict[int, dict[str, str]]] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.model: str | None = None
        self.finished = False

    def add(self, chunk: Any) -> str:
        """Take one chunk; returns the first choice's new text ("" when it has none)."""
        self.model = self.model or _get(chunk, "model")
        usage = _get(chunk, "usage")
        if usage:
            self.prompt_tokens = int(_get(usage, "prompt_tokens") or 0)
            self.completion_tokens = int(_get(usage, "completion_tokens") or 0)
        first = ""
        for choice in _get(chunk, "choices") or ():
            index = int(_get(choice, "index") or 0)
            parts = self._texts.setdefault(index, [])
            delta = _get(choice, "delta") or {}
            content = _get(delta, "content")
            if isinstance(content, str) and content:
                parts.append(content)
                if index == 0:
                    first += content
            self._add_calls(index, _get(delta, "tool_calls"))
            reason = _get(choice, "finish_reason")
            if reason:
                self._finish[index] = reason
                self.finished = True
        return first

    def _add_calls(self, index: int, calls: Any) -> None:
        if not calls or not isinstance(calls, Sequence):
            return
        table = self._calls.setdefault(index, {})
        for position, call in enumerate(calls):
            slot = table.setdefault(int(_get(call, "index") or position), {})
            call_id = _get(call, "id")
            if isinstance(call_id, str):
                slot["id"] = call_id
            function = _get(call, "function")
            name = _get(function, "name") if function is not None else None
            if isinstance(name, str):
                slot["name"] = slot.get("name", "") + name
            arguments = _get(function, "arguments") if function is not None else None
            if isinstance(arguments, str):
                slot["arguments"] = slot.get("arguments", "") + arguments

    def result(self) -> RawCompletion:
        """The completion the chunks so far make up."""
        count = max([*self._texts, *self._finish, -1]) + 1 or 1
        texts = ["".join(self._texts.get(i, ())) for i in range(count)]
        calls = [
            tuple(
                LMToolCall(c.get("name", ""), c.get("arguments") or "{}", c.get("id"))
                for _, c in sorted(self._calls.get(i, {}).items())
                if c.get("name")
            )
            for i in range(count)
        ]
        return RawCompletion(
            texts,
            self.prompt_tokens,
            self.completion_tokens,
            [self._finish.get(i) for i in range(count)],
            self.model,
            calls if any(calls) else (),
        )


_DONE = object()


class LMStream:
    """What :meth:`LM.astream <dspex.lm.LM.astream>` returns: an async iterator of text deltas.

    Once iterated to the end, ``response`` holds the call's :class:`~dspex.lm.LMResponse`
    (usage, cache hit, ...). Leaving the loop early (``break``, cancellation, ``aclose()``)
    cancels the call, which closes its connection.

    Example:
        >>> async for text in lm.astream([{"role": "user", "content": "hi"}]):  # doctest: +SKIP
        ...     print(text, end="")
    """

    def __init__(self, lm: LM, messages: Sequence[Mapping[str, Any]], kwargs: Any) -> None:
        self._lm, self._messages, self._kwargs = lm, messages, kwargs
        self.response: LMResponse | None = None
        self._iterator: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def aclose(self) -> None:
        """Stop: cancel the call if it is still running."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> AsyncIterator[str]:
        sink = QueueSink()

        async def call() -> LMResponse:
            with stream_to(sink):
                return await self._lm._adapter_aforward(self._messages, **self._kwargs)

        task = asyncio.ensure_future(call())
        task.add_done_callback(lambda _: sink.put(_DONE))
        sent = False
        try:
            while True:
                item = await sink.queue.get()
                if item is _DONE:
                    break
                if isinstance(item, StreamChunk):
                    sent = True
                    yield item.text
            self.response = response = await task
            if not sent and response.outputs and response.outputs[0]:
                # An LM subclass whose own ``aforward`` answered without streaming: at once.
                yield response.outputs[0]
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
