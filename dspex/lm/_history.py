"""The record of recent LM calls: per-LM and process-wide, both bounded.

Entries keep what the call sent and got back, minus credentials: request kwargs are
redacted when the entry is made, and everything shown by :func:`inspect_history` or
:meth:`HistoryEntry.to_dict` goes through :func:`dspex._redact.redact` again, so a secret
that slipped into a message never reaches the screen.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from dspex._redact import redact, redact_text
from dspex.primitives._usage import Usage

__all__ = ["GLOBAL_HISTORY", "HistoryEntry", "format_history", "inspect_history"]

GLOBAL_HISTORY_MAX = 10_000


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One LM call as it happened.

    Attributes:
        model: the model that was called.
        messages: the chat messages sent.
        kwargs: request parameters (temperature, n, ...), credentials removed.
        outputs: the completion texts.
        usage: tokens, cost, cache hit counts.
        timestamp: seconds since the epoch when the call finished.
        cache_hit: whether the answer came from the cache.
        latency_s: wall time of the call, retries included.
        rollout_id: the rollout the call belonged to, if any.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    kwargs: Mapping[str, Any]
    outputs: Sequence[str]
    usage: Usage
    timestamp: float
    cache_hit: bool = False
    latency_s: float = 0.0
    rollout_id: int | str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe, redacted dict of this entry."""
        return {
            "model": self.model,
            "messages": redact([dict(m) for m in self.messages]),
            "kwargs": redact(dict(self.kwargs)),
            "outputs": [redact_text(o) for o in self.outputs],
            "usage": self.usage.to_dict(),
            "timestamp": self.timestamp,
            "cache_hit": self.cache_hit,
            "latency_s": self.latency_s,
            "rollout_id": self.rollout_id,
        }


# deque.append is atomic, so threads and loops can record without a lock.
GLOBAL_HISTORY: deque[HistoryEntry] = deque(maxlen=GLOBAL_HISTORY_MAX)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multimodal content: show the text parts, name the rest.
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, Mapping):
                parts.append(f"<{part.get('type', 'part')}>")
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return "" if content is None else str(content)


def _format_entry(entry: HistoryEntry) -> str:
    when = datetime.fromtimestamp(entry.timestamp, tz=UTC).isoformat(timespec="seconds")
    flags = " (cache hit)" if entry.cache_hit else ""
    lines = [f"[{when}] {entry.model}{flags}"]
    if entry.kwargs:
        shown = ", ".join(f"{k}={v!r}" for k, v in redact(dict(entry.kwargs)).items())
        lines.append(f"params: {shown}")
    for message in entry.messages:
        role = str(message.get("role", "?")).capitalize()
        lines.append(f"\n{role} message:\n\n{_content_text(message.get('content'))}")
    for i, output in enumerate(entry.outputs):
        label = "Response" if len(entry.outputs) == 1 else f"Response {i + 1}"
        lines.append(f"\n{label}:\n\n{output}")
    usage = entry.usage
    cost = "unknown" if usage.cost is None else f"${usage.cost:.6f}"
    lines.append(
        f"\n(tokens: {usage.prompt_tokens} in / {usage.completion_tokens} out, cost: {cost}, "
        f"latency: {entry.latency_s * 1000:.0f} ms)"
    )
    return redact_text("\n".join(lines))


def format_history(entries: Iterable[HistoryEntry], n: int = 1) -> str:
    """Render the last ``n`` of ``entries`` as readable, redacted text."""
    items = list(entries)[-n:] if n > 0 else []
    rule = "\n" + "-" * 72 + "\n"
    return rule.join(_format_entry(e) for e in items)


def inspect_history(n: int = 1, *, file: TextIO | None = None) -> str:
    """Print the last ``n`` LM calls made by any LM in this process, and return the text.

    Example:
        >>> import dspex.lm
        >>> text = dspex.lm.inspect_history(n=2)  # doctest: +SKIP
    """
    text = format_history(GLOBAL_HISTORY, n)
    print(text, file=file or sys.stdout)
    return text
