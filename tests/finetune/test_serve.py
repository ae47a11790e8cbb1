"""A local model behind an OpenAI-compatible loopback server, called by an OpenAI client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest

import dspex
from dspex.testing import build_tiny_causal_lm

pytestmark = pytest.mark.slow


def test_openai_clients_reach_a_local_model(tmp_path: Path) -> None:
    base = build_tiny_causal_lm(tmp_path / "tiny", ["What is 2 + 3?", "The answer is 5."])
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspex.finetune.serve", "--model", str(base), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = dspex.LM("openai/tiny", api_base=url, api_key="unused", cache=False)
        messages = [{"role": "user", "content": "What is 2 + 3?"}]
        response = client.forward(messages, max_tokens=4)
        assert len(response.outputs) == 1 and isinstance(response.outputs[0], str)
        assert response.usage.prompt_tokens > 0 and 0 < response.usage.completion_tokens <= 4
        # The same request in-process gives the same greedy answer.
        local = dspex.LM(f"local/{base}", cache=False)
        assert local.forward(messages, max_tokens=4).outputs == response.outputs
        # The official SDK streams it (stream=true): OpenAI's chunks, the usage, [DONE].
        sdk = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        assert [m.id for m in sdk.models.list()] == ["tiny"]
        chunks = list(
            sdk.chat.completions.create(
                model="tiny",
                messages=messages,  # type: ignore[arg-type]
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert len(chunks) > 1 and chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == response.outputs[0]
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
