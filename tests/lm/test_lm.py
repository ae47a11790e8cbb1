"""LM's own API: config round trips, copies, usage and cost, history, threads and loops."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import subprocess
import sys
import threading
from typing import Any

import pytest

import dspex.lm
from dspex._settings import context, current
from dspex.errors import ScriptExhaustedError, UserError
from dspex.lm import LM, LMRequest, RawCompletion, register_price
from tests.lm._server import ScriptedServer, user


class RecordingTransport:
    """A custom transport: what the dspex.testing doubles plug in through ``transport=``."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.requests: list[LMRequest] = []

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        self.requests.append(request)
        if not self.answers:
            raise ScriptExhaustedError("no more answers")
        return RawCompletion([self.answers.pop(0)], prompt_tokens=3, completion_tokens=2)

    async def aclose(self) -> None:
        pass


def test_custom_transport_is_used_as_given() -> None:
    transport = RecordingTransport(["a", "b"])
    lm = LM("dspex-dummy/x", transport=transport, cache=False, temperature=0.3)
    assert lm("one") == ["a"]
    assert lm("two", rollout_id=5) == ["b"]
    assert transport.requests[1].kwargs == {"temperature": 0.3}
    assert transport.requests[1].rollout_id == 5
    with pytest.raises(ScriptExhaustedError):
        lm("three")
    assert lm.dump_config()["transport"] == "custom"
    with pytest.raises(UserError, match="custom transport"):
        LM.from_config(lm.dump_config())
    assert LM.from_config(lm.dump_config(), transport=transport).transport is transport


def test_config_round_trip_and_copy() -> None:
    lm = LM("openai/gpt-4o-mini", api_base="http://127.0.0.1:1/v1", temperature=0.2, n=2)
    config = lm.dump_config()
    assert json.loads(json.dumps(config)) == config
    again = LM.from_config(config)
    assert again.dump_config() == config
    with pytest.raises(UserError, match="Unknown LM config"):
        LM.from_config({**config, "bogus": 1})

    hot = lm.copy(temperature=1.0, n=None, timeout=5)
    assert hot.kwargs == {"temperature": 1.0}
    assert hot.timeout == 5.0 and lm.kwargs == {"temperature": 0.2, "n": 2}
    assert hot.transport is lm.transport  # same route: shared connections
    assert lm.copy(model="anthropic/claude").transport is not lm.transport
    assert copy.deepcopy(lm) is lm


def test_copy_keeps_subclass_and_its_state() -> None:
    class ScriptedLM(LM):
        def __init__(self, answers: list[str]) -> None:
            self.script = RecordingTransport(answers)
            super().__init__("dspex-dummy/x", transport=self.script, cache=False)

    lm = ScriptedLM(["a", "b"])
    hot = lm.copy(temperature=1.0)
    assert isinstance(hot, ScriptedLM) and hot.script is lm.script
    assert hot.transport is lm.transport and hot.kwargs == {"temperature": 1.0}
    assert hot("x") == ["a"] and lm("y") == ["b"]
    assert len(hot.history) == 1 and len(lm.history) == 1


def test_invalid_arguments_are_user_errors() -> None:
    with pytest.raises(UserError):
        LM("")
    with pytest.raises(UserError):
        LM("openai/x", num_retries=-1)
    with pytest.raises(UserError):
        LM("openai/x", transport="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="exactly one"):
        LM("openai/x")()


async def test_cost_from_registered_price(server: ScriptedServer) -> None:
    register_price("openai/sim-priced", 1.0, 2.0)
    lm = LM("openai/sim-priced", api_base=server.base)
    first = await lm.aforward(user("q"))
    assert first.usage.cost == pytest.approx(10 * 1e-6 + 5 * 2e-6)
    hit = await lm.aforward(user("q"))
    assert hit.usage.cost == 0.0 and hit.usage.cache_hits == 1
    total = first.usage + hit.usage
    assert total.calls == 2 and total.cost == pytest.approx(first.usage.cost)


def test_cost_from_litellm_price_map_without_importing_litellm() -> None:
    code = (
        "import sys; from dspex.lm._pricing import cost_of;"
        "c = cost_of('openai/gpt-4o-mini', 1_000_000, 0);"
        "print(c is not None and c > 0, 'litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_importing_dspex_lm_imports_nothing_heavy() -> None:
    code = (
        "import sys, dspex, dspex.lm;"
        "print([m for m in ('litellm','prefect','mlflow','duckdb','aiohttp') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_history_is_bounded_and_readable(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, history_size=2, cache=False)
    for text in ("a", "b", "c"):
        lm(text, temperature=0.5)
    assert [e.messages[0]["content"] for e in lm.history] == ["b", "c"]
    entry = lm.history[-1]
    assert entry.outputs == ["echo 0: c"] and entry.kwargs == {"temperature": 0.5}
    assert entry.usage.prompt_tokens == 10 and not entry.cache_hit
    text = dspex.lm.inspect_history(n=2, file=io.StringIO())
    assert "User message:" in text and "echo 0: c" in text and "echo 0: b" in text
    assert "temperature=0.5" in text


def test_two_threads_two_lms_reach_their_own_servers(
    server: ScriptedServer, server2: ScriptedServer
) -> None:
    lms = {
        "one": LM("openai/sim", api_base=server.base, cache=False),
        "two": LM("openai/sim", api_base=server2.base, cache=False),
    }
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        try:
            with context(lm=lms[name]):
                barrier.wait()
                for i in range(5):
                    out = current().require_lm()(f"{name}-{i}")
                    assert out == [f"echo 0: {name}-{i}"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in lms]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert [s.body["messages"][0]["content"] for s in server.seen] == [f"one-{i}" for i in range(5)]
    assert [s.body["messages"][0]["content"] for s in server2.seen] == [
        f"two-{i}" for i in range(5)
    ]


def test_sync_call_inside_a_running_user_loop(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)

    async def notebook_cell() -> list[str]:
        # Jupyter runs cells inside a loop; a sync call there must still work.
        return lm("from a cell")

    assert asyncio.run(notebook_cell()) == ["echo 0: from a cell"]


def test_async_calls_from_a_user_loop_share_that_loops_pool(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)

    async def main() -> list[Any]:
        return await asyncio.gather(*(lm.acall(f"q{i}") for i in range(20)))

    results = asyncio.run(main())
    assert results == [[f"echo 0: q{i}"] for i in range(20)]
    # The first loop closed its pool on shutdown; a second loop opens its own.
    assert asyncio.run(main()) == results


def test_close_releases_connections(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)
    lm("x")
    lm.close()
    assert lm("y") == ["echo 0: y"]


def test_concurrency_limit_bounds_calls_in_flight_across_evaluations() -> None:
    import threading

    import dspex
    from dspex.datasets import load_task
    from dspex.lm import ConcurrencyLimit
    from dspex.testing import SimulatedLM

    class InFlight(dspex.Callback):
        def __init__(self) -> None:
            self.now = self.peak = 0
            self.lock = threading.Lock()

        def on_lm_start(self, span, lm, request):  # type: ignore[no-untyped-def]
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)

        def on_lm_end(self, span, lm, request, response, error):  # type: ignore[no-untyped-def]
            with self.lock:
                self.now -= 1

    task = load_task("arithmetic")
    dev = task.split(train=0, dev=24, seed=4).dev
    program = dspex.Predict(
        "question -> answer: int", lm=SimulatedLM(task=task, latency=0.02, cache=False)
    )
    counter = InFlight()
    with dspex.context(lm_limit=ConcurrencyLimit(3), callbacks=[counter]):
        dspex.Evaluate(devset=dev, metric=lambda e, p, t=None: 1.0, concurrency=16, progress=False)(
            program
        )
    assert counter.peak == 3


def test_identical_requests_in_flight_are_sent_once() -> None:
    import asyncio

    import dspex
    from dspex.testing import SimulatedLM

    lm = SimulatedLM(task="arithmetic", latency=0.05)
    qa = dspex.Predict("question -> answer: int", lm=lm)

    async def both() -> list[dspex.Prediction]:
        return list(await asyncio.gather(*(qa.acall(question="2+2?") for _ in range(5))))

    from dspex._runtime import run_sync

    preds = run_sync(both())
    assert lm.request_count == 1
    assert len({p.answer for p in preds}) == 1
    assert sum(p.usage.cache_hits for p in preds) == 4
