"""``dspex.configure``, ``dspex.context`` and ``dspex.settings`` behave as DSPy's (ported from
the behaviours DSPy's ``tests/utils/test_settings.py`` checks), except where dspex differs on
purpose: any thread may configure, and nothing is saved with pickle."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import dspex
from dspex._settings import DSPY_ONLY, Settings
from dspex.errors import UnknownSettingError
from dspex.testing import DummyLM

# DSPy 3.4.1's settings (dspy/dsp/utils/settings.py, DEFAULT_CONFIG).
DSPY_SETTINGS = [
    "lm",
    "adapter",
    "rm",
    "branch_idx",
    "trace",
    "callbacks",
    "async_max_workers",
    "send_stream",
    "disable_history",
    "track_usage",
    "usage_tracker",
    "caller_predict",
    "caller_modules",
    "stream_listeners",
    "provide_traceback",
    "num_threads",
    "max_errors",
    "allow_tool_async_sync_conversion",
    "max_history_size",
    "max_trace_size",
    "warn_on_type_mismatch",
    "interpreter_factory",
]


def test_basic_dspex_settings() -> None:
    dspex.configure(
        lm=dspex.LM("openai/gpt-4o"), adapter=dspex.JSONAdapter(), callbacks=[lambda x: x]
    )
    assert dspex.settings.lm.model == "openai/gpt-4o"
    assert isinstance(dspex.settings.adapter, dspex.JSONAdapter)
    assert len(dspex.settings.callbacks) == 1


def test_configure_from_any_thread() -> None:
    # DSPy lets only the first thread configure; dspex lets any thread (a documented
    # difference): the defaults are replaced atomically.
    dspex.configure(lm=dspex.LM("openai/gpt-4o"))

    def worker() -> None:
        dspex.configure(lm=dspex.LM("openai/gpt-4o-mini"), callbacks=[])

    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(worker).result()
    assert dspex.settings.lm.model == "openai/gpt-4o-mini"


def test_dspex_context() -> None:
    dspex.configure(
        lm=dspex.LM("openai/gpt-4o"), adapter=dspex.JSONAdapter(), callbacks=[lambda x: x]
    )
    with dspex.context(lm=dspex.LM("openai/gpt-4o-mini"), callbacks=[]):
        assert dspex.settings.lm.model == "openai/gpt-4o-mini"
        assert len(dspex.settings.callbacks) == 0
    assert dspex.settings.lm.model == "openai/gpt-4o"
    assert len(dspex.settings.callbacks) == 1


def test_dspex_context_parallel() -> None:
    dspex.configure(lm=dspex.LM("openai/gpt-4o"), callbacks=[lambda x: x])

    def worker(i: int) -> None:
        with dspex.context(lm=dspex.LM("openai/gpt-4o-mini"), trace=[i], callbacks=[]):
            assert dspex.settings.lm.model == "openai/gpt-4o-mini"
            assert dspex.settings.trace == [i]
            assert len(dspex.settings.callbacks) == 0

    with ThreadPoolExecutor(max_workers=5) as executor:
        list(executor.map(worker, range(3)))
    assert dspex.settings.lm.model == "openai/gpt-4o"
    assert len(dspex.settings.callbacks) == 1


def test_context_in_parallel_module_calls() -> None:
    france = DummyLM({"France": {"answer": "Paris"}})
    default = DummyLM({"Germany": {"answer": "Berlin"}})
    dspex.configure(lm=default)
    barrier = threading.Barrier(2, timeout=5)

    class MyModule(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspex.Predict("question -> answer")

        def forward(self, question: str) -> dspex.Prediction:
            lm = france if "France" in question else dspex.settings.lm
            with dspex.context(lm=lm):
                barrier.wait()  # both contexts are active at once
                assert dspex.settings.lm is lm
                return self.predict(question=question)

    questions = ["What is the capital of France?", "What is the capital of Germany?"]
    examples = [dspex.Example(question=q).with_inputs("question") for q in questions]
    results = MyModule().batch(examples, num_threads=2)
    assert [r.answer for r in results] == ["Paris", "Berlin"]
    assert france.request_count == default.request_count == 1
    assert dspex.settings.lm is default  # the caller is not affected by the contexts


async def test_context_in_concurrent_async_tasks() -> None:
    france = DummyLM({"capital": {"answer": "Paris"}})
    germany = DummyLM({"capital": {"answer": "Berlin"}})
    entered = 0
    all_entered = asyncio.Event()

    class MyModule(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspex.Predict("question -> answer")

        async def aforward(self, question: str) -> dspex.Prediction:
            nonlocal entered
            lm = france if "France" in question else germany
            with dspex.context(lm=lm, trace=[]):
                entered += 1
                if entered == 4:
                    all_entered.set()
                await all_entered.wait()
                assert dspex.settings.lm is lm
                return await self.predict.acall(question=question)

    with dspex.context(lm=dspex.LM("openai/gpt-4.1"), adapter=dspex.ChatAdapter()):
        module = MyModule()
        questions = ["France", "France", "Germany", "Germany"]
        results = await asyncio.wait_for(
            asyncio.gather(*(module.acall(question=f"capital of {q}?") for q in questions)),
            timeout=5,
        )
        assert [r.answer for r in results] == ["Paris", "Paris", "Berlin", "Berlin"]
        assert france.request_count == germany.request_count == 2
        assert dspex.settings.lm.model == "openai/gpt-4.1"
        assert dspex.settings.trace is None


def test_every_dspy_setting_is_accepted_and_readable() -> None:
    assert set(DSPY_SETTINGS) <= {f for f in Settings.__dataclass_fields__}
    # Each one dspex does not use says what dspex does instead.
    used = {"lm", "adapter", "rm", "callbacks", "num_threads", "max_errors", "provide_traceback"}
    assert set(DSPY_SETTINGS) - used == set(DSPY_ONLY)
    dspex.configure(track_usage=True, async_max_workers=4, max_errors=3, num_threads=2)
    assert dspex.settings.track_usage is True
    assert dspex.settings["async_max_workers"] == 4
    assert dspex.settings.get("max_errors") == 3
    assert dspex.settings.copy()["num_threads"] == 2
    assert dspex.settings.config["num_threads"] == 2
    assert "lm" in dspex.settings and "lmm" not in dspex.settings
    assert dspex.settings.get("lmm", "nope") == "nope"
    # DSPy's defaults, where dspex uses none of its own.
    with dspex.context():
        assert dspex.settings.warn_on_type_mismatch is True
        assert dspex.settings.max_history_size == 10000


def test_settings_methods_and_assignment() -> None:
    lm = dspex.LM("openai/gpt-4o")
    dspex.settings.configure(lm=lm)
    assert dspex.settings.lm is lm
    with dspex.settings.context(adapter=dspex.JSONAdapter()):
        assert isinstance(dspex.settings.adapter, dspex.JSONAdapter)
    assert dspex.settings.adapter is None
    dspex.settings.num_threads = 4  # as dspy.settings.x = v: configure(x=v)
    assert dspex.settings.num_threads == 4
    dspex.settings["max_errors"] = 2
    assert dspex.settings.max_errors == 2
    dspex.configure(lm=None, adapter=None, callbacks=None)  # DSPy code resets like this
    assert dspex.settings.lm is None and dspex.settings.callbacks == ()


def test_unknown_settings_fail_with_a_hint() -> None:
    with pytest.raises(UnknownSettingError, match="did you mean 'track_usage'"):
        dspex.configure(track_usge=True)
    with pytest.raises(TypeError, match="did you mean 'max_errors'"), dspex.context(max_error=1):
        pass
    with pytest.raises(AttributeError, match="no setting 'lmm'"):
        dspex.settings.lmm  # noqa: B018
    with pytest.raises(KeyError):
        dspex.settings["lmm"]
    with pytest.raises(dspex.ConfigurationError, match="num_threads"):
        dspex.configure(num_threads=0)
