"""``StreamListener``: picks one output field's text out of a predictor's LM stream.

The LM streams the raw completion; the adapter's framing tells where a field starts and
ends. With ``ChatAdapter`` a field's value follows ``[[ ## name ## ]]`` and runs to the next
``[[ ## ... ## ]]`` header; with ``JSONAdapter`` it is the value of the ``"name"`` key of the
JSON object, read with a partial JSON parser as the text grows. Text that could still turn
out to be the next header is held back until it is clear, so no framing reaches the user;
the field's value is stripped as the adapter's parser strips it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from dspex.errors import UserError
from dspex.streaming._messages import StreamResponse

if TYPE_CHECKING:
    from dspex.primitives import Module

__all__ = ["StreamListener", "find_predictor_for_stream_listeners"]

_HEADER = re.compile(r"\[\[ ## \w+ ## \]\]")
_HEADER_PREFIX = "[[ ## "
# The tail of a text that may still grow into a header: "[", "[[", "[[ #", "[[ ## answ", ...
_HEADER_START = re.compile(
    r"\[(?:\[(?: (?:#(?:#(?: \w*(?: (?:#(?:#(?: (?:\](?:\])?)?)?)?)?)?)?)?)?)?)?$"
)


class StreamListener:
    """Streams one output field of one predictor of a streamed program.

    Args:
        signature_field_name: the output field to stream.
        predict: the predictor whose field it is; found by ``streamify`` when omitted (the
            one predictor of the program that has that output field).
        predict_name: the predictor's name in the program; found with ``predict``.
        allow_reuse: stream the field again each time the predictor is called (ReAct calls
            its predictor once per step); otherwise only its first call is streamed.

    Example:
        >>> import dspex
        >>> listener = dspex.streaming.StreamListener(signature_field_name="answer")
        >>> program = dspex.streamify(
        ...     dspex.ChainOfThought("question -> answer"), stream_listeners=[listener]
        ... )
    """

    def __init__(
        self,
        signature_field_name: str,
        predict: Any = None,
        predict_name: str | None = None,
        allow_reuse: bool = False,
    ) -> None:
        self.signature_field_name = signature_field_name
        self.predict = predict
        self.predict_name = predict_name
        self.allow_reuse = allow_reuse
        self.stream_start = False
        self.stream_end = False
        self.cache_hit = False
        self._reset()

    def _reset(self) -> None:
        self._call: str | None = None  # the LM call being read (its span id)
        self._text = ""  # that call's whole text so far
        self._value_at: int | None = None  # where the field's value starts in it
        self._sent = 0  # how much of the value has been yielded
        self._json_sent = ""
        self._json = False  # the call's adapter frames its answer as JSON

    def receive(
        self,
        chunk: Any,
        *,
        call_id: str | None = None,
        json_mode: bool | None = None,
        cache_hit: bool | None = None,
    ) -> StreamResponse | None:
        """Take the next piece of the predictor's LM stream; the field's new text, if any.

        ``chunk`` is what DSPy's listener receives: a streamed piece whose new text is
        ``chunk.choices[0].delta.content`` (``streamify`` passes the LM's chunk with the call
        it belongs to and the adapter's framing), so a DSPy subclass that overrides
        ``receive`` and calls ``super().receive(chunk)`` works unchanged. A plain string is
        taken as the text, with the keyword arguments saying where it came from.
        """
        if isinstance(chunk, str):
            text: str | None = chunk
        else:
            text = _content(chunk)
            call_id = call_id if call_id is not None else getattr(chunk, "span_id", None)
            if json_mode is None:
                json_mode = bool(getattr(chunk, "json_mode", False))
            if cache_hit is None:
                cache_hit = bool(getattr(chunk, "cache_hit", False))
        if text is None:
            return None
        if call_id != self._call or self._call is None:
            if self.stream_end and not self.allow_reuse:
                return None
            if self._call is not None or self.stream_end:
                self.stream_start = self.stream_end = False
            self._reset()
            self._call = call_id or ""
        if self.stream_end:
            return None
        self.cache_hit = self.cache_hit or bool(cache_hit)
        self._text += text
        self._json = bool(json_mode)
        if self._json:
            return self._receive_json()
        return self._receive_chat()

    # -- ChatAdapter ---------------------------------------------------------------------------
    def _receive_chat(self) -> StreamResponse | None:
        if self._value_at is None:
            marker = f"[[ ## {self.signature_field_name} ## ]]"
            found = self._text.find(marker)
            if found < 0:
                return None
            self._value_at = found + len(marker)
            self.stream_start = True
        value = self._text[self._value_at :]
        end = _HEADER.search(value)
        if end is not None:
            return self._emit(value[: end.start()].strip(), last=True)
        held = _HEADER_START.search(value)
        # Leading whitespace is not part of the value; trailing whitespace waits for more.
        ready = value[: held.start()] if held else value
        return self._emit(ready.lstrip().rstrip(), last=False, strip_left=True)

    def _emit(self, value: str, *, last: bool, strip_left: bool = False) -> StreamResponse | None:
        chunk = value[self._sent :]
        self._sent = max(self._sent, len(value))
        if last:
            self.stream_end = True
        if not chunk and not last:
            return None
        return StreamResponse(self.predict_name or "", self.signature_field_name, chunk, last)

    # -- JSONAdapter ------------------------------------------------------------------------------
    def _receive_json(self) -> StreamResponse | None:
        from pydantic_core import from_json

        start = self._text.find("{")
        if start < 0:
            return None
        body = self._text[start:]
        complete = True
        try:
            parsed = from_json(body)
        except ValueError:
            complete = False
            try:
                parsed = from_json(body, allow_partial="trailing-strings")
            except ValueError:
                return None
        if not isinstance(parsed, dict) or self.signature_field_name not in parsed:
            return None
        self.stream_start = True
        keys = list(parsed)
        done = complete or keys.index(self.signature_field_name) < len(keys) - 1
        value = parsed[self.signature_field_name]
        if not isinstance(value, str):
            if not done:  # a number or a list is sent whole, once it is complete
                return None
            value = json.dumps(value)
        if done:
            return self._emit(value.strip(), last=True)
        # A growing string: hold trailing whitespace, as the parser strips it.
        return self._emit(value.strip(), last=False)

    def flush(self) -> str:
        """The field's text held back so far and not yet sent (text that could still have
        turned out to be the next field's header), as DSPy's ``flush`` returns it; it counts
        as sent afterwards. Empty before the field started and in JSON mode, where nothing
        is held back but whitespace."""
        if self._value_at is None or self._json:
            return ""
        value = self._text[self._value_at :]
        end = _HEADER.search(value)
        if end is None:
            found = value.find("[[")  # where a header would have started
            value = value if found < 0 else value[:found]
        else:
            value = value[: end.start()]
        value = value.strip()
        chunk = value[self._sent :]
        self._sent = max(self._sent, len(value))
        return chunk

    def finalize(self) -> StreamResponse | None:
        """After the program ended: the field's last chunk (what was held back, if anything)
        when the stream was cut short before the field's end."""
        if self.stream_start and not self.stream_end:
            self.stream_end = True
            return StreamResponse(
                self.predict_name or "", self.signature_field_name, self.flush(), True
            )
        return None


def _content(chunk: Any) -> str | None:
    """``chunk.choices[0].delta.content``, or None where a chunk has no text (a tool call's
    piece, a usage-only chunk)."""
    try:
        content = chunk.choices[0].delta.content
    except (AttributeError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def find_predictor_for_stream_listeners(
    program: Module, stream_listeners: list[StreamListener]
) -> dict[int, list[StreamListener]]:
    """Attach each listener without a ``predict`` to the one predictor with its field.

    Returns the listeners by ``id(predictor)``.

    Raises:
        UserError: a field no predictor has, or one several have (pass ``predict=``).
    """
    predictors = program.named_predictors()
    by_id: dict[int, list[StreamListener]] = defaultdict(list)
    for listener in stream_listeners:
        if listener.predict is None:
            field = listener.signature_field_name
            owners = [(n, p) for n, p in predictors if field in p.signature.output_fields]
            if not owners:
                raise UserError(
                    f"StreamListener({field!r}): no predictor of the program has an output "
                    f"field {field!r}; its predictors' outputs are "
                    f"{ {n: list(p.signature.output_fields) for n, p in predictors} }."
                )
            if len(owners) > 1:
                raise UserError(
                    f"StreamListener({field!r}): several predictors have the output field "
                    f"{field!r} ({[n for n, _ in owners]}); pass predict=program.<predictor> "
                    "to say which one to stream."
                )
            listener.predict_name, listener.predict = owners[0]
        elif listener.predict_name is None:
            names = [n for n, p in predictors if p is listener.predict]
            listener.predict_name = names[0] if names else type(listener.predict).__name__
        by_id[id(listener.predict)].append(listener)
    return by_id
