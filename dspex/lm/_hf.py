"""Run a Hugging Face causal LM in this process: the ``local/`` provider of ``dspex.LM``.

``dspex.LM("local/<path or hub id>", adapter="<LoRA adapter dir>")`` answers through a
``transformers`` model loaded once per process (per model, adapter and device), with the
model's chat template, greedy decoding unless ``temperature`` > 0, and ``max_tokens``.
Concurrent requests are batched: those arriving while a batch runs go together in the next
one (left-padded), up to ``max_batch``. Needs the ``finetune`` extra.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Mapping
from typing import Any

from dspex.errors import UserError
from dspex.lm._types import LMRequest, RawCompletion

__all__ = ["TransformersTransport", "load_local_model"]

_MODELS: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()
_GENERATE_LOCK = threading.Lock()  # one generate at a time per process: torch uses every core


def load_local_model(path: str, adapter: str | None = None, device: str | None = None) -> Any:
    """``(model, tokenizer)`` for ``path`` (+ LoRA ``adapter``), cached for the process."""
    from dspex._extras import device as pick_device
    from dspex._extras import require

    transformers, _ = require("transformers", "torch")
    where = pick_device(device)
    key = (path, adapter, where)
    with _MODELS_LOCK, warnings.catch_warnings():
        # transformers/peft deprecation chatter about their own internals: not the caller's.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if key not in _MODELS:
            tokenizer = transformers.AutoTokenizer.from_pretrained(adapter or path)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"  # generation continues from the right edge
            model = transformers.AutoModelForCausalLM.from_pretrained(path)
            if adapter:
                (peft,) = require("peft")
                model = peft.PeftModel.from_pretrained(model, adapter)
            model.to(where)
            model.eval()
            _MODELS[key] = (model, tokenizer)
        return _MODELS[key]


class TransformersTransport:
    """A ``Transport`` that generates with a local transformers model (see module docs)."""

    # Its batching queue and worker task belong to one loop: an LM runs it on dspex's.
    loop_safe = False

    def __init__(
        self,
        path: str,
        *,
        adapter: str | None = None,
        device: str | None = None,
        max_batch: int = 8,
    ) -> None:
        if not path:
            raise UserError("LM('local/<path>'): give a model directory or a hub id.")
        self.path, self.adapter, self.device, self.max_batch = path, adapter, device, max_batch
        self._queue: asyncio.Queue[tuple[LMRequest, asyncio.Future[RawCompletion]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[RawCompletion] = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await asyncio.to_thread(self._generate, [r for r, _ in batch])
            except Exception as e:  # every caller of this batch gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    def _generate(self, requests: list[LMRequest]) -> list[RawCompletion]:
        """Group requests with the same generation settings and run each group at once."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(_settings_key(r.kwargs), []).append(i)
        out: list[RawCompletion | None] = [None] * len(requests)
        for indices in groups.values():
            texts = self._generate_group([requests[i] for i in indices])
            for i, result in zip(indices, texts, strict=True):
                out[i] = result
        return [r for r in out if r is not None]

    def _generate_group(self, requests: list[LMRequest]) -> list[RawCompletion]:
        import torch

        model, tokenizer = load_local_model(self.path, self.adapter, self.device)
        kwargs = requests[0].kwargs
        prompts = [
            tokenizer.apply_chat_template(
                [dict(m) for m in r.messages], add_generation_prompt=True, tokenize=False
            )
            for r in requests
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = {k: v.to(model.device) for k, v in encoded.items()}
        temperature = float(kwargs.get("temperature") or 0.0)
        n = int(kwargs.get("n") or 1)
        gen: dict[str, Any] = {
            "max_new_tokens": int(kwargs.get("max_tokens") or 256),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "num_return_sequences": n,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            gen["temperature"] = temperature
        with _GENERATE_LOCK, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            output = model.generate(**encoded, **gen)
        width = encoded["input_ids"].shape[1]
        results = []
        for i in range(len(requests)):
            rows = output[i * n : (i + 1) * n, width:]
            texts = [tokenizer.decode(row, skip_special_tokens=True) for row in rows]
            used = int((rows != tokenizer.pad_token_id).sum())
            prompt = int(encoded["attention_mask"][i].sum())
            results.append(
                RawCompletion(
                    texts=texts,
                    prompt_tokens=prompt,
                    completion_tokens=used,
                    finish_reasons=["stop"] * n,
                    model=requests[i].model,
                )
            )
        return results

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
            self._queue = None


def _settings_key(kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    return (kwargs.get("temperature"), kwargs.get("max_tokens"), kwargs.get("n"))
