"""A custom LM subclassed from ``dspex.BaseLM`` exactly as DSPy's docs show, through the public
API: modules and adapters, history and usage, the cache, retries and errors, copies, state, and
an optimizer's ``compile(lm=...)``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

import dspex
from dspex.errors import LMError, LMServerError, UserError

SECRET = "sk-base-lm-secret-0123456789abcdef"


def _answer(messages: Sequence[Mapping[str, Any]], json_mode: bool, answer: str) -> str:
    """The answer text an adapter parses: reasoning only when the signature asks for it."""
    values = {"answer": answer}
    if "reasoning" in str(messages[0]["content"]):
        values = {"reasoning": "Adding.", **values}
    if json_mode:
        return json.dumps(values)
    sections = [f"[[ ## {k} ## ]]\n{v}" for k, v in values.items()]
    return "\n\n".join([*sections, "[[ ## completed ## ]]"])


class DictLM(dspex.BaseLM):
    """Sync ``forward`` only, answering with a dict-shaped chat completion."""

    def __init__(self, model: str = "custom/dict", json_mode: bool = False, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.json_mode = json_mode
        self.answer = "4"
        self.calls: list[dict[str, Any]] = []

    def forward(
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        self.calls.append(kwargs)
        messages = messages or [{"role": "user", "content": prompt}]
        text = _answer(messages, self.json_mode, self.answer)
        choices = [{"message": {"content": text}, "finish_reason": "stop"}]
        return {
            "choices": choices * kwargs.get("n", 1),
            "usage": {"prompt_tokens": 11, "completion_tokens": 7},
            "model": self.model,
        }


class AsyncObjectLM(dspex.BaseLM):
    """Async ``aforward`` only, answering with an object-shaped chat completion."""

    def __init__(self, model: str = "custom/async", json_mode: bool = False, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.json_mode = json_mode
        self.calls = 0

    async def aforward(
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        await asyncio.sleep(0)
        self.calls += 1
        message = SimpleNamespace(content=_answer(messages or [], self.json_mode, "4"))
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message, finish_reason="stop")],
            usage=SimpleNamespace(prompt_tokens=5, completion_tokens=3),
            model=self.model,
        )


class FailingLM(dspex.BaseLM):
    def __init__(self, failures: int, **kwargs: Any) -> None:
        super().__init__("custom/failing", cache=False, retry_backoff=(0.0, 0.0), **kwargs)
        self.failures = failures
        self.calls = 0

    def forward(
        self,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"backend down (key {SECRET})")
        return {"choices": [{"message": {"content": "ok"}}]}


@pytest.mark.parametrize("lm_class", [DictLM, AsyncObjectLM])
@pytest.mark.parametrize("adapter_class", [dspex.ChatAdapter, dspex.JSONAdapter])
@pytest.mark.parametrize("module_class", [dspex.Predict, dspex.ChainOfThought])
def test_a_custom_lm_answers_modules_through_either_adapter(
    lm_class: type[dspex.BaseLM], adapter_class: type[Any], module_class: type[Any]
) -> None:
    lm = lm_class(json_mode=adapter_class is dspex.JSONAdapter, cache=False)
    with dspex.context(lm=lm, adapter=adapter_class()):
        pred = module_class("question -> answer")(question="2+2?")
    assert pred.answer == "4"
    if module_class is dspex.ChainOfThought:
        assert pred.reasoning == "Adding."


async def test_a_custom_lm_runs_in_async_programs() -> None:
    lm = AsyncObjectLM(cache=False)
    pred = await dspex.Predict("question -> answer", lm=lm).acall(question="2+2?")
    assert pred.answer == "4" and lm.calls == 1
    assert await lm.acall("hi") == [_answer([{"content": "hi"}], False, "4")]


def test_calls_appear_in_history_and_usage() -> None:
    lm = DictLM(cache=False, temperature=0.0)
    pred = dspex.Predict("question -> answer", lm=lm)(question="Capital of France?")
    entry = lm.history[-1]
    assert "Capital of France?" in str(entry.messages)
    assert entry.outputs[0].startswith("[[ ## answer ## ]]")
    assert entry.kwargs["temperature"] == 0.0
    assert lm.calls[-1]["temperature"] == 0.0  # default parameters reach forward
    usage = pred.get_lm_usage()
    assert usage is not None
    assert usage[lm.model]["prompt_tokens"] == 11
    assert usage[lm.model]["completion_tokens"] == 7
    assert "Capital of France?" in dspex.inspect_history(1)


@pytest.mark.parametrize("cache", [True, False])
def test_the_cache_answers_repeated_calls_unless_disabled(cache: bool) -> None:
    lm = DictLM(model=f"custom/cache-{cache}", cache=cache)
    qa = dspex.Predict("question -> answer", lm=lm)
    assert qa(question="2+2?").answer == "4"
    assert qa(question="2+2?").answer == "4"
    assert len(lm.calls) == (1 if cache else 2)
    assert lm.history[-1].cache_hit is cache


def test_call_returns_a_list_of_strings() -> None:
    lm = DictLM(cache=False)
    assert lm("hi") == [_answer([{"content": "hi"}], False, "4")]
    outputs = lm(messages=[{"role": "user", "content": "hi"}], n=2)
    assert isinstance(outputs, list) and len(outputs) == 2
    assert all(isinstance(text, str) for text in outputs)


def test_forward_keeps_its_dspy_meaning() -> None:
    lm = DictLM(cache=False)
    raw = lm.forward(prompt="hi")
    assert raw["usage"]["prompt_tokens"] == 11  # the user's response, unconverted
    assert lm.history == type(lm.history)()  # a direct forward bypasses dspex's bookkeeping


def test_a_failing_forward_is_retried_then_raises_a_typed_lm_error() -> None:
    lm = FailingLM(failures=10, num_retries=2)
    with pytest.raises(LMError) as caught:
        dspex.Predict("question -> answer", lm=lm)(question="?")
    assert isinstance(caught.value, LMServerError)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "backend down" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert lm.calls == 3  # num_retries + 1


def test_a_transient_failure_is_retried_away() -> None:
    lm = FailingLM(failures=1, num_retries=1)
    assert lm("hi") == ["ok"]
    assert lm.calls == 2


def test_a_malformed_response_says_what_shape_to_return() -> None:
    class Bad(dspex.BaseLM):
        def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
            return "just text"

    with pytest.raises(UserError, match="choices"):
        Bad("custom/bad", cache=False)("hi")


def test_a_subclass_without_forward_is_a_user_error() -> None:
    class Empty(dspex.BaseLM):
        pass

    with pytest.raises(UserError, match="forward"):
        Empty("custom/empty", cache=False)("hi")


def test_copy_changes_settings_and_calls_the_copy() -> None:
    lm = DictLM(cache=False, temperature=0.0)
    hot = lm.copy(temperature=1.0, model_type="text", answer="5")
    assert isinstance(hot, DictLM)
    assert hot.kwargs == {"temperature": 1.0} and hot.model_type == "text"
    assert dspex.Predict("question -> answer", lm=hot)(question="?").answer == "5"
    assert len(hot.history) == 1 and len(lm.history) == 0
    assert lm.answer == "4" and lm.kwargs == {"temperature": 0.0}


def test_dump_state_carries_no_secret() -> None:
    lm = DictLM(api_key=SECRET, temperature=0.5, max_tokens=100)
    state = lm.dump_state()
    assert state == {
        "model": "custom/dict",
        "model_type": "chat",
        "cache": True,
        "num_retries": 3,
        "temperature": 0.5,
        "max_tokens": 100,
    }
    for text in (json.dumps(state), json.dumps(lm.dump_config()), repr(lm)):
        assert SECRET not in text


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_bootstrap_compiles_with_a_custom_lm(tmp_path: Any) -> None:
    lm = DictLM(model="custom/compile", cache=False)
    trainset = [dspex.Example(question="2+2?", answer="4").with_inputs("question")]
    optimizer = dspex.BootstrapFewShot(
        metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
    )
    compiled = optimizer.compile(
        dspex.Predict("question -> answer"), trainset=trainset, lm=lm, runs_dir=tmp_path
    )
    assert len(compiled.demos) == 1 and compiled.demos[0].answer == "4"
    assert lm.calls  # the flow called this very object


def test_load_state_rebuilds_the_lm() -> None:
    lm = DictLM(temperature=0.5, num_retries=1)
    again = DictLM.load_state(lm.dump_state())
    assert isinstance(again, DictLM)
    assert again.dump_state() == lm.dump_state()
