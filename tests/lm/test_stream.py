"""LM.astream: text deltas as they arrive, over the OpenAI path and litellm, from the cache."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import dspex
from dspex.testing import DummyLM, serve

LONG = " ".join(f"word{i}" for i in range(40))
MESSAGES = [{"role": "user", "content": "Say many words."}]


def stream_all(lm: dspex.LM, **kwargs: Any) -> tuple[list[str], Any]:
    async def run() -> tuple[list[str], Any]:
        stream = lm.astream(MESSAGES, **kwargs)
        texts = [t async for t in stream]
        return texts, stream.response

    return asyncio.run(run())


@pytest.mark.parametrize("transport", ["openai", "litellm"])
def test_a_call_streams_deltas_then_returns_the_whole_response(transport: str) -> None:
    with serve(DummyLM([LONG])) as srv:
        lm = dspex.LM("openai/dummy", api_base=srv.url, api_key="x", transport=transport)
        texts, response = stream_all(lm)
        assert len(texts) > 10 and "".join(texts) == LONG
        assert response.outputs == [LONG] and not response.cache_hit
        # The usage comes in the stream's last chunk (stream_options.include_usage).
        assert response.usage.completion_tokens > 0 and response.usage.prompt_tokens > 0
        assert lm.history[-1].outputs == [LONG]
        assert srv.stats()["streams_completed"] == 1
        # The streamed answer was cached: the same call streams it again at once, in one piece.
        again, cached = stream_all(lm)
        assert again == [LONG] and cached.cache_hit
        assert srv.request_count == 1


def test_leaving_the_stream_early_closes_the_connection() -> None:
    with serve(DummyLM([LONG])) as srv:
        srv.server.stream_interval = 0.05  # ~2 s for the whole answer
        lm = dspex.LM("openai/dummy", api_base=srv.url, api_key="x", cache=False)

        async def run() -> list[str]:
            got: list[str] = []
            stream = lm.astream(MESSAGES)
            async for text in stream:
                got.append(text)
                if len(got) == 2:
                    break
            await stream.aclose()
            return got

        assert asyncio.run(run()) == ["word0", " word1"]
        deadline = time.monotonic() + 5
        while srv.stats()["streams_cancelled"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.stats()["streams_cancelled"] == 1
        assert srv.stats()["streams_completed"] == 0


def test_a_transport_that_cannot_stream_sends_its_answer_as_one_chunk() -> None:
    lm = DummyLM([LONG])
    texts, response = stream_all(lm, cache=False)
    assert texts == [LONG] and response.outputs == [LONG]


def test_a_failed_stream_raises_the_typed_error() -> None:
    # Nothing streams from a port nobody listens on: the LM's usual error, after its retries.
    lm = dspex.LM("openai/x", api_base="http://127.0.0.1:9/v1", api_key="x", num_retries=0)
    with pytest.raises(dspex.LMError, match="broke"):
        stream_all(lm, cache=False)


def test_a_custom_base_lm_streams_its_answer_as_one_chunk() -> None:
    class Echo(dspex.BaseLM):
        def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
            text = f"echo: {messages[-1]['content']}"
            return {"choices": [{"message": {"role": "assistant", "content": text}}]}

    texts, response = stream_all(Echo("echo"))
    assert texts == ["echo: Say many words."] and response.outputs == texts


def test_every_choice_of_a_streamed_call_comes_back() -> None:
    with serve(DummyLM(["first answer here", "second", "third"])) as srv:
        lm = dspex.LM("openai/dummy", api_base=srv.url, api_key="x", cache=False)
        texts, response = stream_all(lm, n=3)
    assert texts == ["first", " answer", " here"]  # the first choice is what streams
    assert response.outputs == ["first answer here", "second", "third"]
