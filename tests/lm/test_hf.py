"""The local transformers transport (``LM("local/...")``) on a tiny model built here: requests
batched by generation settings, each caller's own answer, finish reasons, the dtype and
batch-size choices for devices this machine may not have (their capabilities injected)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.lm._hf import (
    DeviceInfo,
    TransformersTransport,
    batch_token_budget,
    inference_dtype,
    load_local_model,
    plan_batches,
)
from dspex.lm._types import LMRequest, RawCompletion
from dspex.testing import build_tiny_causal_lm

QUESTIONS = [f"What is {a} + {b}?" for a, b in [(1, 2), (12, 30), (7, 7), (100, 250), (3, 9)]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    texts = [*QUESTIONS, "The answer is 3.", "The answer is 42.", "The answer is 350."]
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny"), texts))


def _request(path: str, question: str, **kwargs: Any) -> LMRequest:
    return LMRequest(f"local/{path}", ({"role": "user", "content": question},), kwargs)


async def _all_at_once(
    transport: TransformersTransport, requests: list[LMRequest]
) -> list[RawCompletion]:
    try:
        return list(await asyncio.gather(*(transport.complete(r, timeout=60) for r in requests)))
    finally:
        await transport.aclose()


def test_requests_are_grouped_by_settings_and_each_caller_gets_its_own_answer(tiny: str) -> None:
    requests = [
        _request(tiny, q, max_tokens=3 if i % 2 else 5) for i, q in enumerate(QUESTIONS * 2)
    ]
    together = TransformersTransport(tiny)
    results = asyncio.run(_all_at_once(together, requests))
    # Ten requests of two settings arrived together: one generate per setting.
    assert together.stats.generate_calls == 2 and together.stats.sequences == 10
    # Each answer is the one that request gets on its own (greedy), in the caller's order.
    for request, result in zip(requests, results, strict=True):
        assert result.completion_tokens == request.kwargs["max_tokens"]
        assert result.finish_reasons == ["length"]
    for request, result in zip(requests[:4], results[:4], strict=True):
        alone = TransformersTransport(tiny)
        (expected,) = asyncio.run(_all_at_once(alone, [request]))
        assert result.texts == expected.texts
        assert result.prompt_tokens == expected.prompt_tokens > 0


def test_max_tokens_cut_reports_length_and_an_end_of_turn_reports_stop(
    tiny: str, tmp_path: Path
) -> None:
    lm = dspex.LM(f"local/{tiny}", cache=False)
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    try:
        cut = lm.forward(messages, max_tokens=2, n=2, temperature=0.0)
        sampled = lm.forward(messages, max_tokens=2, n=2, temperature=1.0)
    finally:
        lm.close()
    assert cut.finish_reasons == ("length", "length") and cut.truncated
    assert cut.usage.completion_tokens == 4 and cut.outputs[0] == cut.outputs[1]
    assert sampled.finish_reasons == ("length", "length") and len(sampled.outputs) == 2

    # A copy of the model whose generation config ends a turn at the token it says first:
    # generation stops there, before max_tokens.
    from transformers import GenerationConfig

    first = _first_token(tiny)
    stopping = tmp_path / "stops"
    shutil.copytree(tiny, stopping)
    config = GenerationConfig.from_pretrained(tiny)
    config.eos_token_id = [int(config.eos_token_id), first]
    config.save_pretrained(stopping)
    stops = dspex.LM(f"local/{stopping}", cache=False)
    try:
        stopped = stops.forward(messages, max_tokens=8)
    finally:
        stops.close()
    assert stopped.finish_reasons == ("stop",) and not stopped.truncated
    assert stopped.usage.completion_tokens == 1 and stopped.outputs == [""]


def _first_token(path: str) -> int:
    import torch

    model, tokenizer = load_local_model(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0]}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        return int(model(ids).logits[0, -1].argmax())


def test_weights_load_in_the_checkpoint_dtype_on_cpu(tiny: str) -> None:
    import torch

    model, tokenizer = load_local_model(tiny, device="cpu")
    assert model.dtype == torch.float32 and tokenizer.padding_side == "left"


@pytest.mark.parametrize(
    ("device", "declared", "expected"),
    [
        (DeviceInfo("cuda", bf16=True), None, "bfloat16"),
        (DeviceInfo("cuda", bf16=True), "float32", "bfloat16"),
        (DeviceInfo("cuda", bf16=True), "torch.bfloat16", "bfloat16"),
        (DeviceInfo("cuda", bf16=True), "float16", "float16"),
        (DeviceInfo("cuda", bf16=False), "bfloat16", "float16"),  # e.g. a V100 or T4
        (DeviceInfo("cuda", bf16=False), "float32", "float16"),
        (DeviceInfo("mps", bf16=True), "float32", "bfloat16"),
        (DeviceInfo("cpu", bf16=True), "float32", "float32"),
        (DeviceInfo("cpu", bf16=True), "bfloat16", "bfloat16"),
        (DeviceInfo("cpu", bf16=True), "float16", "float32"),
    ],
)
def test_inference_dtype_choice(device: DeviceInfo, declared: str | None, expected: str) -> None:
    assert inference_dtype(device, declared) == expected


def test_batches_are_length_sorted_and_fit_memory_and_the_cap() -> None:
    h200 = DeviceInfo("cuda", bf16=True, free_bytes=120 * 2**30)
    # ~1B model in bf16: 16 layers x 8 KV heads x 64 dims x 2 (K, V) x 2 bytes + activations
    per_token = (2 * 16 * 8 * 64 + 4 * 2048 + 3 * 8192) * 2
    budget = batch_token_budget(h200, per_token)
    assert budget is not None and budget > 256 * (512 + 256)  # room for the whole cap
    lengths = [500, 20, 480, 25, 30]
    assert plan_batches(lengths, new_tokens=256, n=1, cap=256, budget=budget) == [[1, 3, 4, 2, 0]]
    assert plan_batches(lengths, new_tokens=256, n=1, cap=2, budget=budget) == [[1, 3], [4, 2], [0]]
    # A small free memory cuts the long prompts into smaller generates; n multiplies.
    small = batch_token_budget(DeviceInfo("cuda", True, free_bytes=2 * 1600 * per_token), per_token)
    assert small == 1600
    assert plan_batches(lengths, new_tokens=256, n=2, cap=256, budget=small) == [
        [1, 3],
        [4],
        [2],
        [0],
    ]
    assert batch_token_budget(DeviceInfo("cpu", True, free_bytes=None), per_token) is None
