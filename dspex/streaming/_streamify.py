"""``streamify``: run a program and yield its output fields as the LM writes them.

The program runs as a task in the caller's context with two additions: a chunk sink, into
which every LM call streams its text (``dspex.lm`` does the streaming), and a
:class:`~dspex.streaming.StatusStreamingCallback`, which announces module, LM and tool calls
and records which predictor made each LM call. The generator reads the sink: chunks go to
the listeners of the predictor that made them, status messages go out as they are, and the
program's ``Prediction`` comes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from typing import Any

from dspex._jsonable import dumps
from dspex._runtime import run_sync
from dspex._settings import context, current
from dspex.lm._stream import QueueSink, StreamChunk, stream_to
from dspex.primitives import Prediction
from dspex.streaming._listener import StreamListener, find_predictor_for_stream_listeners
from dspex.streaming._messages import (
    StatusMessage,
    StatusMessageProvider,
    StatusStreamingCallback,
    StreamResponse,
)

__all__ = ["apply_sync_streaming", "streamify", "streaming_response"]


@dataclasses.dataclass(frozen=True)
class _Routed:
    """A chunk and what made it, resolved when the chunk was made (in the program's thread).

    It is what a listener's ``receive`` gets: the chunk's OpenAI shape
    (``choices[0].delta.content``, as DSPy's listeners read it), the LM call it belongs to
    (``span_id``), whether it is a cached answer, and whether the adapter frames JSON.
    """

    chunk: StreamChunk
    predict_id: int | None
    json_mode: bool

    @property
    def choices(self) -> list[Any]:
        return self.chunk.choices

    @property
    def span_id(self) -> str | None:
        return self.chunk.span_id

    @property
    def cache_hit(self) -> bool:
        return self.chunk.cache_hit


@dataclasses.dataclass(frozen=True)
class _Finished:
    task: asyncio.Future[Any]


class _ProgramSink(QueueSink):
    """The call's sink: routes each LM chunk to its predictor at once, while the span tables
    say who made it."""

    def __init__(self) -> None:
        super().__init__()
        self.callback: StatusStreamingCallback | None = None

    def put(self, item: Any) -> None:
        if isinstance(item, StreamChunk) and self.callback is not None:
            module, adapter = self.callback.owner_of(item.span_id)
            predict_id = id(module) if module is not None else None
            item = _Routed(item, predict_id, _is_json_adapter(adapter))
        super().put(item)


def _is_json_adapter(adapter: Any) -> bool:
    from dspex.adapters import JSONAdapter

    return isinstance(adapter, JSONAdapter)


def streamify(
    program: Any,
    status_message_provider: StatusMessageProvider | None = None,
    stream_listeners: list[StreamListener] | None = None,
    include_final_prediction_in_output_stream: bool = True,
    is_async_program: bool = False,
    async_streaming: bool = True,
) -> Callable[..., Any]:
    """Wrap a program so a call yields its output as it is written, then the ``Prediction``.

    Args:
        program: the module (or any callable returning a ``Prediction``) to stream.
        status_message_provider: writes the :class:`StatusMessage` values for module, LM
            and tool starts and ends (:class:`StatusMessageProvider` by default: tools only).
        stream_listeners: one :class:`StreamListener` per output field to stream as
            :class:`StreamResponse` chunks. Without listeners every LM text delta is yielded
            as a ``dspex.lm.StreamChunk``.
        include_final_prediction_in_output_stream: yield the ``Prediction`` at the end. It is
            yielded anyway when there are no listeners, or none of them saw its field.
        is_async_program: call ``program.acall`` (an async program) instead of running the
            sync call in a worker thread.
        async_streaming: ``True``: the call returns an async generator; ``False``: a sync
            generator (see :func:`apply_sync_streaming`).

    Returns:
        A function taking the program's arguments and returning the generator.

    Example:
        >>> import asyncio, dspex
        >>> from dspex.streaming import StreamListener, StreamResponse
        >>> stream = dspex.streamify(
        ...     dspex.ChainOfThought("question -> answer"),
        ...     stream_listeners=[StreamListener(signature_field_name="answer")],
        ... )
        >>> async def main():
        ...     async for value in stream(question="Why is the sky blue?"):
        ...         if isinstance(value, StreamResponse):
        ...             print(value.chunk, end="")
        ...         elif isinstance(value, dspex.Prediction):
        ...             return value
        >>> prediction = asyncio.run(main())  # doctest: +SKIP
    """
    listeners = list(stream_listeners or [])
    by_predict = find_predictor_for_stream_listeners(program, listeners) if listeners else {}
    call = _caller(program, is_async_program)

    async def streamer(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        sink = _ProgramSink()
        callback = StatusStreamingCallback(status_message_provider, sink)
        sink.callback = callback
        for listener in listeners:  # each call starts afresh
            listener.stream_start = listener.stream_end = listener.cache_hit = False
            listener._reset()

        async def run() -> Any:
            callbacks = (*current().callbacks, callback)
            with context(callbacks=callbacks), stream_to(sink):
                return await call(*args, **kwargs)

        task = asyncio.ensure_future(run())
        task.add_done_callback(lambda t: sink.put(_Finished(t)))
        try:
            async for value in _drain(sink, by_predict, listeners):
                yield value
            prediction = task.result()
            for value in _ending(prediction, listeners, include_final_prediction_in_output_stream):
                yield value
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    if async_streaming:
        return streamer

    def sync_streamer(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        return apply_sync_streaming(streamer(*args, **kwargs))

    return sync_streamer


def _caller(program: Any, is_async_program: bool) -> Callable[..., Any]:
    if is_async_program:
        acall: Callable[..., Any] = getattr(program, "acall", program)
        return acall
    if inspect.iscoroutinefunction(program):
        return program  # type: ignore[no-any-return]

    async def in_thread(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(program, *args, **kwargs)

    return in_thread


async def _drain(
    sink: QueueSink, by_predict: dict[int, list[StreamListener]], listeners: list[StreamListener]
) -> AsyncIterator[Any]:
    """Everything the program sends, until it ends (its result is the caller's to read)."""
    while True:
        item = await sink.queue.get()
        if isinstance(item, _Finished):
            return
        if isinstance(item, _Routed):
            if not listeners:
                yield item.chunk
                continue
            found = [
                out
                for listener in by_predict.get(item.predict_id or 0, ())
                if (out := listener.receive(item)) is not None
            ]
            # One piece may end a field and start the next: the field that ends goes first.
            for out in sorted(found, key=lambda r: not r.is_last_chunk):
                yield out
        else:
            yield item  # a StatusMessage, or a user's own value


def _ending(prediction: Any, listeners: list[StreamListener], include: bool) -> list[Any]:
    out: list[Any] = [last for listener in listeners if (last := listener.finalize())]
    silent = not listeners or not any(listener.stream_start for listener in listeners)
    if include or silent or any(listener.cache_hit for listener in listeners):
        out.append(prediction)
    return out


def apply_sync_streaming(async_generator: AsyncGenerator[Any, None]) -> Generator[Any, None, None]:
    """Iterate an async generator from sync code (each step runs on dspex's event loop).

    Example:
        >>> import dspex
        >>> stream = dspex.streamify(dspex.Predict("q -> a"))
        >>> for value in dspex.streaming.apply_sync_streaming(stream(q="hi")):  # doctest: +SKIP
        ...     print(value)
    """
    try:
        while True:
            try:
                item = run_sync(async_generator.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        run_sync(async_generator.aclose())


async def streaming_response(streamer: AsyncIterator[Any]) -> AsyncGenerator[str, None]:
    """A streamed program's values as server-sent events, ending with ``data: [DONE]``.

    ``Prediction`` → ``{"prediction": {...}}``, :class:`StreamResponse` → ``{"chunk": {...}}``,
    :class:`StatusMessage` → ``{"status_message": "..."}``, an LM chunk →
    ``{"chunk": {"text": ...}}``; a string starting with ``data:`` passes as it is.

    Raises:
        ValueError: a value of another type.
    """
    async for value in streamer:
        yield _event(value)
    yield "data: [DONE]\n\n"


def _event(value: Any) -> str:
    if isinstance(value, str) and value.startswith("data:"):
        return value
    if isinstance(value, Prediction):
        data: Any = {"prediction": dict(value.items())}
    elif isinstance(value, StreamResponse | StreamChunk):
        data = {"chunk": dataclasses.asdict(value)}
    elif isinstance(value, StatusMessage):
        data = {"status_message": value.message}
    else:
        raise ValueError(f"Unknown chunk value type: {value!r}")
    return f"data: {dumps(data).decode()}\n\n"
