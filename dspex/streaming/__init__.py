"""Streaming programs: output fields as the LM writes them, status messages, then the result.

``dspex.streamify(program, stream_listeners=[StreamListener("answer")])`` returns a function
whose calls yield :class:`StreamResponse` chunks of the listened fields, :class:`StatusMessage`
values from a :class:`StatusMessageProvider`, and the final ``Prediction`` — DSPy's streaming
API. See docs/streaming.md.

Example:
    >>> import dspex
    >>> from dspex.streaming import StreamListener
    >>> stream = dspex.streamify(
    ...     dspex.Predict("question -> answer"),
    ...     stream_listeners=[StreamListener(signature_field_name="answer")],
    ... )
"""

from dspex.lm._stream import StreamChunk
from dspex.streaming._listener import StreamListener, find_predictor_for_stream_listeners
from dspex.streaming._messages import (
    StatusMessage,
    StatusMessageProvider,
    StatusStreamingCallback,
    StreamResponse,
)
from dspex.streaming._streamify import apply_sync_streaming, streamify, streaming_response

__all__ = [
    "StatusMessage",
    "StatusMessageProvider",
    "StatusStreamingCallback",
    "StreamChunk",
    "StreamListener",
    "StreamResponse",
    "apply_sync_streaming",
    "find_predictor_for_stream_listeners",
    "streamify",
    "streaming_response",
]
