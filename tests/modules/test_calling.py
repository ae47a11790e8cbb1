"""Calling modules: sync and async, from threads, with secrets kept out of everything."""

import asyncio
import threading

import pytest

import dspex
from dspex.lm import LM
from dspex.testing import DummyLM, serve

SENTINEL = "sk-test-SENTINEL-0123456789"


class TwoStep(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = dspex.Predict("question -> draft")
        self.second = dspex.ChainOfThought("question, draft -> answer")

    async def aforward(self, question: str) -> dspex.Prediction:
        draft = await self.first.acall(question=question)
        return await self.second.acall(question=question, draft=draft.draft)


async def test_async_module_calls() -> None:
    lm = DummyLM(
        {
            "Respond with the corresponding output fields, starting with the field `[[ ## draft": {
                "draft": "d"
            },
            "[[ ## draft ## ]]\nd": {"reasoning": "r", "answer": "a"},
        }
    )
    with dspex.context(lm=lm):
        pred = await TwoStep().acall(question="q")
        preds = await asyncio.gather(*(TwoStep().acall(question=f"q{i}") for i in range(3)))
    assert pred.answer == "a"
    assert [p.answer for p in preds] == ["a", "a", "a"]


def test_two_threads_with_two_lms_each_reach_their_own() -> None:
    qa = dspex.Predict("question -> answer")  # one program, shared by both threads
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        lm = DummyLM({"?": {"answer": name}})
        with dspex.context(lm=lm):
            barrier.wait()
            results[name] = [qa(question=f"{i}?").answer for i in range(20)]
        assert lm.request_count == 20

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("alpha", "beta")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"alpha": ["alpha"] * 20, "beta": ["beta"] * 20}


def test_sync_call_inside_an_async_module_on_dspex_loop_says_use_acall() -> None:
    class Wrong(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qa = dspex.Predict("question -> answer", lm=DummyLM([{"answer": "x"}]))

        async def aforward(self, question: str) -> dspex.Prediction:
            return self.qa(question=question)  # sync call inside the loop

    result = dspex.Evaluate(
        devset=[dspex.Example(question="q", answer="x").with_inputs("question")],
        metric=lambda e, p, t=None: 1.0,
        progress=False,
    )(Wrong())
    assert "acall" in (result.rows[0].error or "")


def test_no_secret_in_saved_program_history_or_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sim = DummyLM([{"answer": "ok"}] * 2)
    with serve(sim) as server:
        lm = LM("openai/sim", api_base=server.url, api_key=SENTINEL, cache=False)
        qa = dspex.ChainOfThought("question -> answer", lm=lm)
        qa.predict.demos = [dspex.Example(question="q", reasoning="r", answer="a")]
        try:
            qa(question="hello")
        except dspex.DspexError as e:  # DummyLM answers without reasoning: a parse error
            assert SENTINEL not in str(e)
        path = qa.save(tmp_path / "qa.json")
        text = path.read_text()
        assert SENTINEL not in text and "api_key" not in text
        assert '"model": "openai/sim"' in text
        assert SENTINEL not in dspex.inspect_history(5)
        assert SENTINEL not in repr(lm)
        restored = dspex.ChainOfThought("question -> answer").load(path)
        assert restored.predict.lm.model == "openai/sim"

    bad = LM("openai/sim", api_base="http://127.0.0.1:9/v1", api_key=SENTINEL, num_retries=0)
    with pytest.raises(dspex.LMError) as info:
        dspex.Predict("question -> answer", lm=bad)(question="q")
    assert SENTINEL not in str(info.value)
