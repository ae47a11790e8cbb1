"""examples/serve_champion.py: answers with @champion and picks up a promotion on reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import openai
import pytest

import dspex
import dspex.mlflow

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _register(instructions: str) -> str:
    program = dspex.ChainOfThought("question -> answer: int")
    program.set_lm(dspex.LM("dspex-sim/arithmetic"))
    for predictor in program.predictors():
        predictor.signature = predictor.signature.with_instructions(instructions)
    with mlflow.start_run():
        info = dspex.mlflow.log_model(program, "program", registered_model_name="served")
    return str(info.registered_model_version)


def _call(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if path == "/healthz" else json.dumps(body or {}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + path, data=data), timeout=60) as r:
        result: dict[str, Any] = json.loads(r.read())
        return result


def test_serves_the_champion_and_follows_a_promotion(tmp_path: Path) -> None:
    uri = dspex.mlflow.configure_tracking(None, runs_dir=tmp_path)
    dspex.mlflow.ensure_experiment("serving", runs_dir=tmp_path)
    mlflow.set_experiment("serving")
    first = _register("Answer the arithmetic question.")
    dspex.mlflow.set_alias("served", "champion", first)

    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env["DSPEX_CACHE_DIR"] = str(tmp_path / "service-cache")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "serve_champion.py"),
            "--model",
            "served",
            "--port",
            "0",
            "--poll-s",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "serving models:/served@champion v1" in banner, banner
        url = banner.rsplit(" on ", 1)[1].strip()
        assert _call(url, "/healthz")["version"] == first
        answer = _call(url, "/predict", {"question": "What is 2 + 3?"})
        assert answer["version"] == first and isinstance(answer["answer"], int)

        second = _register("Compute the answer step by step, then give the integer.")
        assert dspex.mlflow.promote("served", second) == first
        assert _call(url, "/reload") == {"version": second, "reloaded": True}
        assert _call(url, "/predict", {"question": "What is 2 + 3?"})["version"] == second
        assert _call(url, "/reload") == {"version": second, "reloaded": False}
        _check_streaming(url, second)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _check_streaming(url: str, version: str) -> None:
    """``POST /stream`` sends the fields as they are written, then the prediction; the
    OpenAI endpoint streams the answer to the official SDK."""
    request = urllib.request.Request(
        url + "/stream", data=json.dumps({"question": "What is 7 + 5?"}).encode()
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        lines = [line.decode().strip() for line in r if line.strip()]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    final = events[-1]
    assert final["version"] == version and isinstance(final["prediction"]["answer"], int)
    answer = [e for e in events[:-1] if e.get("field") == "answer"]
    reasoning = [e for e in events[:-1] if e.get("field") == "reasoning"]
    assert len(reasoning) > 1 and answer and answer[-1]["is_last_chunk"]
    assert int("".join(e["chunk"] for e in answer)) == final["prediction"]["answer"]

    sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in sdk.models.list()] == ["served@champion"]
    chunks = list(
        sdk.chat.completions.create(
            model="served@champion",
            messages=[{"role": "user", "content": "What is 7 + 5?"}],
            stream=True,
        )
    )
    assert len(chunks) > 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == str(final["prediction"]["answer"])
