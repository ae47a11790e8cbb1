"""The official ``openai`` SDK streams from dspex's loopback server as it does from OpenAI.

(``python -m dspex.finetune.serve`` is covered in tests/finetune/test_serve.py and the
serving example in tests/examples/test_serve_champion.py, each with the server they start.)
"""

from __future__ import annotations

import openai

from dspex.testing import DummyLM, serve

ANSWER = "The loopback server streams this answer word by word."


def test_the_openai_sdk_streams_chunks_from_the_loopback_server() -> None:
    with serve(DummyLM([ANSWER, ANSWER])) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["dspex-sim"]
        messages = [{"role": "user", "content": "Stream, please."}]
        chunks = list(
            client.chat.completions.create(
                model="dummy",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert len(chunks) > 3
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == ANSWER
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens > 0
        # Without stream_options there is no usage chunk, as with OpenAI.
        plain = list(client.chat.completions.create(model="dummy", messages=messages, stream=True))  # type: ignore[arg-type]
        assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason
