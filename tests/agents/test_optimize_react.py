"""Optimizing an agent: a ReAct program on the bundled ``tooluse`` task, whose simulated
model picks the right tool and arguments more often with hint instructions and correct
trajectory demos; BootstrapFewShot and MIPROv2 optimize it as Prefect flows, the winner
registers with the MLflow flavor (its tools by import path) and a fresh process loads it by
alias and runs it against the simulator's HTTP server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.datasets import ToolUseAgent, calculator, load_task, lookup
from dspex.optimize import one_demo_per_example
from dspex.testing import SimulatedLM, fetch_stats, start_server_process
from tests.fresh import run_fresh

TASK = load_task("tooluse")
TRAIN, DEV, TEST = TASK.split(train=40, dev=60, seed=0)


def exact(example: dspex.Example, prediction: dspex.Prediction, trace: object = None) -> bool:
    return bool(example.answer == prediction.answer)


def _score(program: dspex.Module, lm: dspex.LM, data: list[dspex.Example] = TEST) -> float:
    with dspex.context(lm=lm):
        return dspex.Evaluate(devset=data, metric=exact, concurrency=8, progress=False)(
            program
        ).score


def _trajectory_demo(example: dspex.Example, *, correct: bool = True) -> dspex.Example:
    """A finishing ReAct demo for ``example``: its plan's calls, run, then ``finish``."""
    agent = ToolUseAgent()
    trajectory: dict[str, Any] = {}
    observations: list[Any] = []
    for k, call in enumerate(example.plan):
        args = {a: str(v).format(*observations) for a, v in call["args"].items()}
        if not correct and call["tool"] == "lookup":
            args["field"] = "stock" if args["field"] != "stock" else "price"
        observations.append(agent.tools[call["tool"]](**args))
        trajectory.update(
            {
                f"thought_{k}": f"Call {call['tool']}.",
                f"tool_name_{k}": call["tool"],
                f"tool_args_{k}": args,
                f"observation_{k}": observations[-1],
            }
        )
    return dspex.Example(
        question=example.question,
        trajectory=agent._format_trajectory(trajectory),
        next_thought="That is all I need.",
        next_tool_name="finish",
        next_tool_args={},
    )


TOOLS: dict[str, Callable[..., int]] = {"calculator": calculator, "lookup": lookup}


def test_the_tools_do_what_the_plans_say() -> None:
    for ex in TASK.examples:
        observations: list[int] = []
        for call in ex.plan:
            tool = TOOLS[call["tool"]]
            args = {a: str(v).format(*observations) for a, v in call["args"].items()}
            observations.append(tool(**args))
        assert observations[-1] == ex.answer
    with pytest.raises(ValueError, match="only whole numbers"):
        calculator("__import__('os').getcwd()")
    with pytest.raises(KeyError, match="no item named"):
        lookup("Nonexistium", "price")


def test_tool_use_accuracy_responds_to_instructions_and_demos() -> None:
    lm = SimulatedLM(task=TASK, cache=False)
    baseline = _score(ToolUseAgent(), lm, DEV)

    hinted = ToolUseAgent()
    hinted.react.signature = hinted.react.signature.with_instructions(
        "Make one tool call at a time and pass the exact item name to the lookup tool.\n\n"
        + hinted.react.signature.instructions
    )
    with_demos = ToolUseAgent()
    with_demos.react.demos = [_trajectory_demo(ex) for ex in TRAIN[:4]]
    wrong_demos = ToolUseAgent()
    lookups = [ex for ex in TRAIN if ex.kind != "calculator"][:4]
    wrong_demos.react.demos = [_trajectory_demo(ex, correct=False) for ex in lookups]

    assert 20 <= baseline <= 50
    assert _score(hinted, lm, DEV) >= baseline + 15
    assert _score(with_demos, lm, DEV) >= baseline + 20
    assert _score(wrong_demos, lm, DEV) < baseline
    assert _score(ToolUseAgent(), SimulatedLM(task=TASK, cache=False), DEV) == baseline


def test_one_demo_per_example_keeps_the_last_call_or_an_earlier_one_as_dspy_does() -> None:
    assert one_demo_per_example([{"step": 0}]) == {"step": 0}
    picks = []
    for i in range(40):
        calls = [{"q": i, "step": s} for s in range(3)]
        pick = one_demo_per_example(calls)
        assert pick in calls and pick == one_demo_per_example(calls)  # deterministic
        picks.append(pick["step"])
    assert 10 <= picks.count(2) <= 30 and set(picks) == {0, 1, 2}


@pytest.mark.slow
def test_bootstrap_fewshot_learns_trajectory_demos(tmp_path: Path) -> None:
    lm = SimulatedLM(task=TASK)
    baseline = _score(ToolUseAgent(), lm)
    opt = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=4, max_labeled_demos=0)
    best = opt.compile(ToolUseAgent(), trainset=TRAIN, lm=lm, runs_dir=tmp_path)

    assert isinstance(best, ToolUseAgent)
    demos = best.react.demos
    assert len(demos) == 4  # one per bootstrapped example, as DSPy keeps them
    assert all(
        {"question", "trajectory", "next_thought", "next_tool_name", "next_tool_args"}
        <= set(d.keys())
        for d in demos
    )
    finishing = [d for d in demos if d.next_tool_name == "finish"]
    assert finishing and all("[[ ## observation_0 ## ]]" in d.trajectory for d in finishing)
    assert len(best.extract.predict.demos) == 4
    assert _score(best, lm) >= baseline + 25


@pytest.mark.slow
def test_mipro_optimizes_registers_and_a_fresh_process_serves_the_agent(tmp_path: Path) -> None:
    lm = SimulatedLM(task=TASK)
    baseline = _score(ToolUseAgent(), lm)
    opt = dspex.MIPROv2(exact, auto="light", seed=0)
    best = opt.compile(
        ToolUseAgent(),
        trainset=TRAIN,
        valset=DEV,
        lm=lm,
        runs_dir=tmp_path,
        tracking={"model_name": "tool-agent", "alias": "champion"},
    )
    optimized = _score(best, lm)
    assert optimized >= baseline + 40
    result = opt.last_result
    assert result is not None and result.model_version == "1"

    # The registered model names the agent's class; its tools are code, not data.
    artifacts = tmp_path / "mlartifacts"
    assert not [p for p in artifacts.rglob("*") if p.suffix in (".pkl", ".pickle")]
    manifests = [p.read_text() for p in artifacts.rglob("*.json")]
    assert any("dspex.datasets._tooluse:ToolUseAgent" in text for text in manifests)

    questions = TEST[:30]
    with start_server_process("tooluse") as server:
        out = run_fresh(
            LOAD,
            server.url,
            [ex.question for ex in questions],
            cwd=tmp_path,
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
        assert fetch_stats(server.url)["requests"] >= 2 * len(questions)
    assert out["program"] == "ToolUseAgent"
    assert all(out["tools_ran"])  # every run called a tool and saw its observation
    served = [a == ex.answer for a, ex in zip(out["answers"], questions, strict=True)]
    # The same simulator behind HTTP: the fresh process scores what this process does.
    assert round(100 * sum(served) / len(served), 2) == _score(
        best, SimulatedLM(task=TASK), questions
    )


LOAD = """
import json, sys
import dspex, dspex.mlflow
lm = dspex.LM("openai/sim", api_base=json.loads(sys.argv[1]), api_key="x", cache=False)
agent = dspex.mlflow.load_model("models:/tool-agent@champion", lm=lm)
answers, tools_ran = [], []
for question in json.loads(sys.argv[2]):
    pred = agent(question=question)
    answers.append(pred.answer)
    tools_ran.append(pred.trajectory.get("tool_name_0") in ("calculator", "lookup"))
print(json.dumps({"program": type(agent).__name__, "answers": answers, "tools_ran": tools_ran}))
"""
