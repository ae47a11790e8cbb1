"""The in-process transport: a responder behind the ``Transport`` protocol, no network.

It plays the provider's part faithfully: it waits the responder's latency, and turns fault
replies into the same typed errors a real HTTP transport raises (``lm_error_from_status`` for
429/500, ``LMTimeoutError`` when a request hangs past the caller's timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

from dspex.errors import LMTimeoutError, lm_error_from_status
from dspex.lm._types import LMRequest, RawCompletion
from dspex.testing._core import Reply, Responder

__all__ = ["LocalTransport", "raise_for_fault"]


def raise_for_fault(reply: Reply, model: str) -> None:
    """Raise the typed error a provider's 429 or 500 becomes."""
    if reply.fault == "rate_limit":
        raise lm_error_from_status(
            429, "simulated rate limit", model=model, retry_after=reply.retry_after
        )
    if reply.fault == "server_error":
        raise lm_error_from_status(500, "simulated server error", model=model)


class LocalTransport:
    """Serves requests from a responder (``Simulator`` or ``Script``) in this process.

    Example:
        >>> from dspex.testing import LocalTransport, Simulator
        >>> from dspex.datasets import load_task
        >>> transport = LocalTransport(Simulator(load_task("arithmetic")))
    """

    name = "dspex-local"

    def __init__(self, responder: Responder) -> None:
        self.responder = responder

    def __repr__(self) -> str:
        return f"LocalTransport({type(self.responder).__name__})"

    # An LM may be copied (e.g. ``lm.copy(temperature=1.0)``); the copy must share the same
    # simulator or script, its counters and its position in the script.
    def __copy__(self) -> LocalTransport:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> LocalTransport:
        return self

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        """Answer ``request``; raise typed ``LMError``s for injected faults."""
        reply = self.responder.reply(request)
        if reply.fault == "hang" or self.responder.latency > timeout:
            await asyncio.sleep(timeout)
            raise LMTimeoutError(
                f"{request.model}: no answer within {timeout:g}s (simulated hang). Retrying may "
                "succeed; raise timeout= if the model is just slow.",
                model=request.model,
            )
        raise_for_fault(reply, request.model)
        if self.responder.latency > 0:
            await asyncio.sleep(self.responder.latency)
        return RawCompletion(
            texts=list(reply.texts),
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            finish_reasons=list(reply.finish_reasons),
            model=request.model,
            tool_calls=reply.tool_calls,
        )

    async def aclose(self) -> None:
        """Nothing to release."""
