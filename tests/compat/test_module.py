"""``dspex.Module`` behaves as DSPy's (ported from the behaviours DSPy's
``tests/primitives/test_module.py``, ``test_base_module.py`` and ``tests/predict`` check)."""

import asyncio
import threading

import pytest

import dspex
from dspex import Module, Prediction
from dspex.testing import DummyLM


class HopModule(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict1 = dspex.Predict("question -> query")
        self.predict2 = dspex.Predict("query -> answer")

    def forward(self, question: str) -> Prediction:
        query = self.predict1(question=question).query
        return self.predict2(query=query)


def test_module_initialization() -> None:
    assert Module()._compiled is False


def test_named_predictors_and_predictors() -> None:
    module = HopModule()
    assert [n for n, _ in module.named_predictors()] == ["predict1", "predict2"]
    assert all(isinstance(p, dspex.Predict) for p in module.predictors())
    assert len(module.predictors()) == 2


def test_nested_named_predictors() -> None:
    class Hop2Module(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hop = HopModule()

    assert [n for n, _ in Hop2Module().named_predictors()] == ["hop.predict1", "hop.predict2"]


def test_forward_and_call() -> None:
    lm = DummyLM({"What is 1+1?": {"query": "let me check"}, "let me check": {"answer": "2"}})
    with dspex.context(lm=lm):
        assert HopModule()(question="What is 1+1?").answer == "2"


def test_named_sub_modules_names_and_traversal() -> None:
    module = Module()
    assert list(module.named_sub_modules()) == [("self", module)]
    module.sub = Module()
    module.sub.subsub = Module()
    module.not_a_sub = "Not a module"
    assert list(module.named_sub_modules()) == [
        ("self", module),
        ("self.sub", module.sub),
        ("self.sub.subsub", module.sub.subsub),
    ]


def test_complex_module_traversal() -> None:
    root = Module()
    root.sub_module = Module()
    root.sub_module.nested_list = [Module(), {"key": Module()}]
    same = Module()
    root.sub_module.nested_tuple = (Module(), [same, same])
    assert {name for name, _ in root.named_sub_modules()} == {
        "self",
        "self.sub_module",
        "self.sub_module.nested_list[0]",
        "self.sub_module.nested_list[1][key]",
        "self.sub_module.nested_tuple[0]",
        "self.sub_module.nested_tuple[1][0]",
    }
    predict_names = [n for n, _ in root.named_sub_modules(type_=dspex.Predict)]
    assert predict_names == []


def test_named_parameters_names_lists_dicts_and_compiled_submodules() -> None:
    class Program(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p0 = dspex.Predict("question -> answer")
            self.p1 = self.p0  # the same predictor twice is listed once
            self.hops = [dspex.Predict("a -> b"), dspex.ChainOfThought("a -> b")]
            self.tools = {"search": dspex.Predict("q -> r")}
            self.frozen = HopModule()
            self.frozen._compiled = True  # kept frozen, as DSPy does

    names = [n for n, _ in Program().named_parameters()]
    assert names == ["p0", "hops[0]", "hops[1].predict", "tools['search']"]
    assert [n for n, _ in dspex.Predict("q -> a").named_parameters()] == ["self"]
    assert len(Program().parameters()) == 4


def test_deepcopy_basic() -> None:
    cot = dspex.ChainOfThought(dspex.Signature("q -> a"))
    cot_copy = cot.deepcopy()
    assert len(cot.parameters()) == len(cot_copy.parameters())
    assert cot.parameters()[0] is not cot_copy.parameters()[0]
    assert cot.parameters()[0].__dict__ == cot_copy.parameters()[0].__dict__


def test_deepcopy_with_uncopyable_attributes_and_no_super_init() -> None:
    class CustomClass(dspex.Module):
        def __init__(self) -> None:
            self.lock = threading.Lock()  # cannot be copied
            self.cot = dspex.ChainOfThought(dspex.Signature("q -> a"))

    class Outer(dspex.Module):
        def __init__(self) -> None:
            self.submodel = CustomClass()

    for model, lock_of in ((CustomClass(), lambda m: m.lock), (Outer(), lambda m: m.submodel.lock)):
        model_copy = model.deepcopy()
        assert lock_of(model_copy) is lock_of(model)
        assert len(model.parameters()) == len(model_copy.parameters())
        assert model.parameters()[0] is not model_copy.parameters()[0]
        assert model.parameters()[0].__dict__ == model_copy.parameters()[0].__dict__
        assert model.reset_copy().parameters()[0].demos == []


def test_reset_copy_clears_demos_and_shares_lms() -> None:
    lm = DummyLM([])
    program = HopModule()
    program.set_lm(lm)
    program.predict1.demos = [dspex.Example(question="q", query="x")]
    fresh = program.reset_copy()
    assert fresh.predict1.demos == [] and len(program.predict1.demos) == 1
    assert fresh.predict1.lm is lm


def test_set_lm_and_get_lm() -> None:
    program = HopModule()
    assert program.get_lm() is None
    lm = DummyLM([])
    program.set_lm(lm)
    assert program.get_lm() is lm
    program.predict2.lm = DummyLM([])
    with pytest.raises(ValueError, match="Multiple LMs"):
        program.get_lm()


def test_batch_runs_every_example_in_order_in_threads() -> None:
    lm = DummyLM({f"q{i}": {"answer": f"a{i}"} for i in range(6)})
    examples = [
        dspex.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(6)
    ]
    qa = dspex.Predict("question -> answer")
    with dspex.context(lm=lm):  # each thread sees this context
        results = qa.batch(examples, num_threads=3)
    assert [r.answer for r in results] == [f"a{i}" for i in range(6)]


def test_batch_failures_and_max_errors() -> None:
    class Flaky(dspex.Module):
        def forward(self, n: int) -> Prediction:
            if n % 2:
                raise RuntimeError(f"odd {n}")
            return Prediction(n=n)

    examples = [dspex.Example(n=i).with_inputs("n") for i in range(4)]
    results, failed, errors = Flaky().batch(examples, num_threads=2, return_failed_examples=True)
    assert [r.n if r is not None else None for r in results] == [0, None, 2, None]
    assert sorted(f.n for f in failed) == [1, 3]
    assert all(isinstance(e, RuntimeError) for e in errors)
    with pytest.raises(RuntimeError, match="max_errors=1"):
        Flaky().batch(examples, num_threads=1, max_errors=1)


def test_aforward_and_acall() -> None:
    class Async(dspex.Module):
        async def aforward(self, x: int) -> Prediction:
            await asyncio.sleep(0)
            return Prediction(y=x + 1)

    class SyncOnly(dspex.Module):
        def forward(self, x: int) -> Prediction:
            return Prediction(y=x * 2)

    async def main() -> tuple[Prediction, Prediction]:
        return await Async().acall(x=1), await SyncOnly().acall(x=2)

    a, b = asyncio.run(main())
    assert (a.y, b.y) == (2, 4)


def test_positional_arguments_are_a_value_error_naming_the_inputs() -> None:
    qa = dspex.Predict("question, context -> answer")
    with pytest.raises(ValueError, match="Positional arguments are not allowed") as info:
        qa("What?")
    assert "'question, context'" in str(info.value)
    assert "predict(question=input_value, ...)" in str(info.value)
    with pytest.raises(ValueError, match="Positional arguments are not allowed"):
        asyncio.run(qa.acall("What?"))
