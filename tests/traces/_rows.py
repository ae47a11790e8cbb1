"""Synthetic trace rows that match schema version 2 (the recorder is tested elsewhere)."""

from __future__ import annotations

import json
import random
from typing import Any

from dspex.traces import COLUMNS

T0 = 1_700_000_000.0  # epoch seconds of the first synthetic row

STAGES = ("bootstrap", "propose", "search", "eval")
MODULES = ("draft.predict", "refine.predict", "answer.predict")
MODELS = ("openai/gpt-4o-mini", "openai/gpt-4o")


def make_row(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """Row ``i`` of a deterministic stream: an LM call; ``overrides`` replace any column."""
    rnd = random.Random(i)
    stage = STAGES[i % len(STAGES)]
    started = T0 + i
    latency_ms = round(rnd.uniform(50, 1500), 3)
    cache_hit = rnd.random() < 0.3
    prompt_tokens = rnd.randint(50, 2000)
    completion_tokens = rnd.randint(1, 300)
    row: dict[str, Any] = {
        "span_id": f"span-{i}",
        "parent_span_id": f"module-{i // 4}",
        "kind": "lm",
        "stage": stage,
        "trial": i % 7,
        "labels": {"stage": stage, "trial": str(i % 7)},
        "module_path": MODULES[i % len(MODULES)],
        "module_class": "Predict",
        "predictor": MODULES[i % len(MODULES)],
        "signature": "QA(question -> answer)",
        "model": MODELS[i % len(MODELS)],
        "inputs": json.dumps({"question": f"What is {i} + 1?"}),
        "messages": json.dumps([{"role": "user", "content": f"What is {i} + 1?"}]),
        "response": json.dumps([f"[[ ## answer ## ]]\n{i + 1}"]),
        "outputs": json.dumps({"answer": str(i + 1)}),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": None if cache_hit else round(prompt_tokens * 1.5e-7 + completion_tokens * 6e-7, 9),
        "latency_ms": 0.5 if cache_hit else latency_ms,
        "cache_hit": cache_hit,
        "rollout_id": None,
        "attempt": 1,
        "status": "ok",
        "http_status": None,
        "error_type": None,
        "error_message": None,
        "started_at": started,
        "ended_at": started + latency_ms / 1000,
    }
    row.update(overrides)
    assert set(row) == set(COLUMNS)
    return row


def make_rows(n: int, start: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    return [make_row(i, **overrides) for i in range(start, start + n)]
