"""The loopback OpenAI-compatible server, over real HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

import dspex
from dspex.datasets import load_task
from dspex.errors import LMBadRequestError, LMTimeoutError
from dspex.testing import DummyLM, Faults, SimulatedLM, fetch_stats, serve, start_server_process

from .prompts import chat_prompt, parse_answer

QUESTIONS = [ex.question for ex in load_task("arithmetic").examples[:40]]


def post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_subprocess_server_429_stats_and_stop_by_pid() -> None:
    proc = start_server_process("arithmetic", faults=Faults(rate_429=0.5, retry_after=1.5))
    try:
        assert proc.url.startswith("http://127.0.0.1:") and proc.url.endswith("/v1")
        statuses = []
        for q in QUESTIONS:
            status, headers, body = post(proc.url, {"model": "sim", "messages": chat_prompt(q)})
            statuses.append(status)
            if status == 429:
                assert headers["Retry-After"] == "1.5"
                assert body["error"]["type"] == "rate_limit_error"
            else:
                assert parse_answer(body["choices"][0]["message"]["content"]) is not None
        assert set(statuses) == {200, 429}
        assert proc.stats()["requests"] == len(QUESTIONS)
    finally:
        proc.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)


def test_answers_an_openai_chat_request_like_the_in_process_simulator() -> None:
    sim = SimulatedLM("arithmetic", cache=False)
    with serve(SimulatedLM("arithmetic")) as srv:
        for q in QUESTIONS[:5]:
            messages = chat_prompt(q, reasoning=True)
            status, _, body = post(srv.url, {"model": "m", "messages": messages, "n": 2})
            assert status == 200 and body["object"] == "chat.completion"
            assert [c["index"] for c in body["choices"]] == [0, 1]
            assert body["choices"][0]["message"]["content"] == sim.forward(messages).outputs[0]
            assert body["usage"]["prompt_tokens"] > 0
        assert fetch_stats(srv.url)["requests"] == 5 == srv.request_count


def test_keep_alive_health_and_errors() -> None:
    with serve(SimulatedLM("arithmetic")) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        for path, status in (("/health", 200), ("/v1/models", 200), ("/nope", 404)):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status
        conn.request("POST", "/v1/chat/completions", body=b"{not json")
        resp = conn.getresponse()
        assert resp.status == 400 and b"invalid request body" in resp.read()
        conn.request("GET", "/stats")  # same socket throughout: keep-alive
        assert json.loads(conn.getresponse().read())["requests"] == 0
        conn.close()


def test_dspex_lm_through_the_server_and_many_connections() -> None:
    with serve(SimulatedLM("arithmetic", latency=0.02)) as srv:
        lm = dspex.LM("openai/sim", api_base=srv.url, api_key="x", cache=False)
        assert parse_answer(lm(messages=chat_prompt(QUESTIONS[0]))[0]) is not None

        async def many() -> list[int]:
            async with aiohttp.ClientSession() as session:

                async def one(q: str) -> int:
                    payload = {"model": "m", "messages": chat_prompt(q)}
                    async with session.post(f"{srv.url}/chat/completions", json=payload) as r:
                        await r.read()
                        return r.status

                return list(await asyncio.gather(*(one(q) for q in QUESTIONS)))

        start = time.perf_counter()
        assert asyncio.run(many()) == [200] * len(QUESTIONS)
        assert time.perf_counter() - start < 1.0  # concurrent, not 40 x 20 ms in a row


def test_hang_times_out_on_the_client() -> None:
    with serve(SimulatedLM(faults=Faults(rate_hang=1.0))) as srv:
        lm = dspex.LM("openai/sim", api_base=srv.url, api_key="x", timeout=0.2, num_retries=0)
        with pytest.raises(LMTimeoutError):
            lm.forward(chat_prompt(QUESTIONS[0]), cache=False)


def test_dummy_file_server(tmp_path: Path) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps([{"answer": "4"}]))
    with start_server_process(dummy_file=answers) as proc:
        lm = dspex.LM("openai/dummy", api_base=proc.url, api_key="x", cache=False, num_retries=0)
        assert "4" in lm("What is 2+2?")[0]
        with pytest.raises(LMBadRequestError, match="ran out"):
            lm("And 3+3?")
        assert urlsplit(proc.url).hostname == "127.0.0.1"


def test_serve_shares_the_double() -> None:
    dummy = DummyLM([{"answer": "7"}])
    with serve(dummy) as srv:
        status, _, body = post(srv.url, {"model": "m", "messages": chat_prompt("3+4?")})
    assert status == 200 and "7" in body["choices"][0]["message"]["content"]
    assert dummy.request_count == 1 and dummy.script.remaining == 0
