"""Run a Hugging Face causal LM in this process: the ``local/`` provider of ``dspex.LM``.

``dspex.LM("local/<path or hub id>", adapter="<LoRA adapter dir>")`` answers through a
``transformers`` model loaded once per process (per model, adapter and device), with the
model's chat template, greedy decoding unless ``temperature`` > 0, and ``max_tokens``.
Needs the ``finetune`` extra.

How requests become ``generate`` calls (what makes an ``Evaluate`` over a local model run at
the speed of batched generation, not one prompt at a time):

* **Size-adaptive batching.** One worker per transport takes every request waiting, then
  lingers while more keep arriving (callers whose previous answer was just delivered are
  formatting their next prompt on the same loop) — briefly, a small fraction of the last
  ``generate``'s duration — so a batch holds everyone who is ready, up to the limit below.
  While a batch generates (in a worker thread), the next one fills.
* **Grouped by generation settings.** Requests with different ``temperature``,
  ``max_tokens``, ``n``, ``top_p`` ... cannot share a ``generate``: each group runs on its
  own, and every caller gets its own answer.
* **Memory-aware limit, length-sorted padding.** A group is sorted by prompt length and cut
  into chunks whose KV cache and activations fit half of the device's free memory
  (:func:`batch_token_budget`), at most ``max_batch`` sequences; prompts are left-padded only
  to the longest prompt of their chunk.
* **Dtype.** Weights load in the model's own dtype; on a GPU that supports bfloat16 a float32
  checkpoint loads in bfloat16 (float16 where it does not); see :func:`inference_dtype`.
* **Finish reason.** ``"length"`` when ``max_tokens`` stopped a completion before its
  end-of-sequence token, else ``"stop"`` (a truncated answer is then neither cached nor
  parsed as complete by the adapters).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dspex.errors import UserError
from dspex.lm._types import LMRequest, RawCompletion, token_limit

__all__ = [
    "BatchStats",
    "DeviceInfo",
    "TransformersTransport",
    "batch_token_budget",
    "inference_dtype",
    "load_local_model",
    "plan_batches",
    "probe_device",
]

_MODELS: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()
_GENERATE_LOCK = threading.Lock()  # one generate at a time per process: torch uses every core
# Every generate runs on this one thread. torch's OpenMP keeps a team of worker threads per
# calling thread, and idle teams spin: generates spread over asyncio's default executor
# threads left several teams competing for the cores (10x the CPU time on a busy machine).
_GENERATE_THREAD: ThreadPoolExecutor | None = None
_DEFAULT_MAX_TOKENS = 256
# Most sequences one generate runs, before memory limits: past this the CPU (or a GPU's
# compute) is saturated and a larger batch only delays everyone's first answer.
_MAX_BATCH = {"cuda": 256, "mps": 64, "cpu": 64}
# Lingering for more requests: never longer than this, nor than this share of the last
# generate's duration, nor after this long without a new arrival.
_LINGER_MAX_S = 0.05
_LINGER_SHARE = 0.05
_LINGER_GAP_S = 0.002


@dataclass(frozen=True)
class DeviceInfo:
    """What the dtype and batch-size choices need to know about a device.

    ``free_bytes`` is the memory available for new tensors (``None``: unknown); ``bf16``
    whether bfloat16 matmuls run natively there. Tests build one to check the choices for a
    device they do not have.
    """

    kind: str  # "cuda", "mps" or "cpu"
    bf16: bool
    free_bytes: int | None = None
    total_bytes: int | None = None
    name: str = ""


def probe_device(where: str) -> DeviceInfo:
    """The :class:`DeviceInfo` of torch device ``where`` (``"cuda"``, ``"cuda:1"``, ``"cpu"``)."""
    import torch

    kind = where.split(":")[0]
    if kind == "cuda":
        index = torch.device(where).index or 0
        free, total = torch.cuda.mem_get_info(index)
        # Memory torch's allocator holds but does not use is free to it, not to the driver.
        free += torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return DeviceInfo(
            "cuda",
            bool(torch.cuda.is_bf16_supported()),
            int(free),
            int(total),
            torch.cuda.get_device_name(index),
        )
    if kind == "mps":
        # bfloat16 on MPS needs macOS 14 or later; float16 runs everywhere MPS does.
        return DeviceInfo("mps", False, None, None, "mps")
    return DeviceInfo("cpu", True, _available_ram(), None, "cpu")


def _available_ram() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def inference_dtype(device: DeviceInfo, model_dtype: str | None) -> str:
    """The dtype to load weights in for generation on ``device``, given the checkpoint's
    (``config.dtype``; ``None`` when it does not say, i.e. float32).

    A GPU runs half precision: bfloat16 where supported (a float32 checkpoint too: twice the
    speed and half the memory, and the range of float32), else float16. A CPU keeps the
    checkpoint's dtype, except float16, which CPUs emulate slowly (float32 then).

    Example:
        >>> from dspex.lm._hf import DeviceInfo, inference_dtype
        >>> inference_dtype(DeviceInfo("cuda", bf16=True), "float32")
        'bfloat16'
        >>> inference_dtype(DeviceInfo("cpu", bf16=True), "float16")
        'float32'
    """
    declared = (model_dtype or "float32").removeprefix("torch.")
    if device.kind == "cpu":
        return "float32" if declared == "float16" else declared
    if declared == "float16" or not device.bf16:
        return "float16"
    return "bfloat16"


def batch_token_budget(device: DeviceInfo, bytes_per_token: int) -> int | None:
    """How many tokens (sequences x their padded length) one generate may hold at once:
    half of the device's free memory over the bytes each token costs (KV cache plus the
    transient activations of the prompt pass); ``None`` when free memory is unknown.

    Example:
        >>> from dspex.lm._hf import DeviceInfo, batch_token_budget
        >>> batch_token_budget(DeviceInfo("cuda", True, free_bytes=8 * 2**30), 2**20)
        4096
    """
    if device.free_bytes is None:
        return None
    return max(1, device.free_bytes // 2 // max(1, bytes_per_token))


def plan_batches(
    lengths: Sequence[int], *, new_tokens: int, n: int, cap: int, budget: int | None
) -> list[list[int]]:
    """Cut prompts (by index) into generates: sorted by length, so each is padded only to
    its own longest prompt, with at most ``cap`` prompts and ``budget`` tokens (prompts x
    ``n`` x (longest + ``new_tokens``)) each; a prompt over budget alone still runs alone.

    Example:
        >>> from dspex.lm._hf import plan_batches
        >>> plan_batches([30, 5, 6, 29], new_tokens=10, n=1, cap=8, budget=90)
        [[1, 2], [3, 0]]
    """
    chunks: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # Ascending length: the prompt being added is the chunk's longest.
        tokens = (len(current) + 1) * n * (lengths[i] + new_tokens)
        if current and (len(current) >= cap or (budget is not None and tokens > budget)):
            chunks.append(current)
            current = []
        current.append(i)
    if current:
        chunks.append(current)
    return chunks


def _bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """KV cache (2 x layers x KV heads x head dim) plus a prompt-pass activation allowance
    (a few hidden- and MLP-width vectors) per token, in bytes."""
    text = getattr(config, "text_config", None) or config
    hidden = int(getattr(text, "hidden_size", 4096))
    heads = int(getattr(text, "num_attention_heads", 32))
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    layers = int(getattr(text, "num_hidden_layers", 32))
    mlp = int(getattr(text, "intermediate_size", 4 * hidden))
    kv = 2 * layers * kv_heads * head_dim
    return (kv + 4 * hidden + 3 * mlp) * dtype_bytes


def load_local_model(path: str, adapter: str | None = None, device: str | None = None) -> Any:
    """``(model, tokenizer)`` for ``path`` (+ LoRA ``adapter``), cached for the process."""
    from dspex._extras import device as pick_device
    from dspex._extras import require

    transformers, torch = require("transformers", "torch")
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
            config = transformers.AutoConfig.from_pretrained(path)
            declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
            dtype = inference_dtype(probe_device(where), str(declared) if declared else None)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                path, dtype=getattr(torch, dtype)
            )
            if adapter:
                (peft,) = require("peft")
                model = peft.PeftModel.from_pretrained(model, adapter)
            model.to(where)
            model.eval()
            _MODELS[key] = (model, tokenizer)
        return _MODELS[key]


@dataclass
class BatchStats:
    """Counts of what a transport ran: ``generate`` calls, the sequences they held, the
    largest batch. Read ``lm.transport.stats`` to see how well requests were batched."""

    generate_calls: int = 0
    sequences: int = 0
    largest: int = 0

    def add(self, size: int) -> None:
        self.generate_calls += 1
        self.sequences += size
        self.largest = max(self.largest, size)


_Pending = tuple[LMRequest, "asyncio.Future[RawCompletion]"]


class TransformersTransport:
    """A ``Transport`` that generates with a local transformers model (see module docs).

    Args:
        path: a model directory or hub id.
        adapter: a LoRA adapter directory (peft) to apply.
        device: a torch device; ``None`` picks CUDA, then MPS, then CPU.
        max_batch: most sequences per ``generate``; ``None`` for the device's default
            (256 on CUDA, 64 otherwise), always also bounded by free memory.
    """

    # Its batching queue and worker task belong to one loop: an LM runs it on dspex's.
    loop_safe = False

    def __init__(
        self,
        path: str,
        *,
        adapter: str | None = None,
        device: str | None = None,
        max_batch: int | None = None,
    ) -> None:
        if not path:
            raise UserError("LM('local/<path>'): give a model directory or a hub id.")
        if max_batch is not None and max_batch < 1:
            raise UserError(f"max_batch must be 1 or more, got {max_batch}.")
        self.path, self.adapter, self.device, self.max_batch = path, adapter, device, max_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._last_generate_s = 0.0

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        future: asyncio.Future[RawCompletion] = loop.create_future()
        self._queue.put_nowait((request, future))
        if self._worker is None:
            self._worker = loop.create_task(self._run(self._queue))
        return await future

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        """Batch and generate until nobody waits, then end (``complete`` starts a new worker
        for the next request), so an idle transport leaves no task pending on its loop."""
        try:
            while not queue.empty():
                await self._serve(await self._collect(queue))
        finally:
            if self._worker is asyncio.current_task():
                self._worker = None

    async def _serve(self, batch: list[_Pending]) -> None:
        """Generate for a batch and hand each caller its answer (or the batch's error)."""
        live = [(r, f) for r, f in batch if not f.done()]  # a cancelled caller is gone
        if not live:
            return
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                _generate_thread(), self._generate, [r for r, _ in live]
            )
        except asyncio.CancelledError:  # closed mid-batch: its callers stop waiting too
            for _, fut in live:
                fut.cancel()
            raise
        except Exception as e:  # every caller of this batch gets the error
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(e)
            return
        finally:
            self._last_generate_s = time.perf_counter() - started
        for (_, fut), result in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        """Everyone waiting, then whoever arrives while arrivals keep coming (see module
        docs): callers just answered are formatting their next prompt on this loop."""
        batch = [await queue.get()]
        cap = self.max_batch or _MAX_BATCH["cuda"]
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        deadline = quiet_since + min(_LINGER_MAX_S, _LINGER_SHARE * self._last_generate_s)
        grew = True
        while len(batch) < cap:
            if grew:
                # Callers already scheduled on this loop enqueue within a pass or two.
                await asyncio.sleep(0)
                quiet_since = loop.time()
            elif loop.time() >= deadline or loop.time() - quiet_since >= _LINGER_GAP_S:
                break
            else:  # other threads' calls arrive a little later (call_soon_threadsafe)
                await asyncio.sleep(_LINGER_GAP_S / 4)
            grew = not queue.empty()
            while len(batch) < cap and not queue.empty():
                batch.append(queue.get_nowait())
        return batch

    def _generate(self, requests: list[LMRequest]) -> list[RawCompletion]:
        """Group requests with the same generation settings and run each group at once."""
        model, tokenizer = load_local_model(self.path, self.adapter, self.device)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(settings_key(r.kwargs), []).append(i)
        out: list[RawCompletion | None] = [None] * len(requests)
        for indices in groups.values():
            group = [requests[i] for i in indices]
            for i, result in zip(indices, self._generate_group(model, tokenizer, group)):
                out[i] = result
        return [r for r in out if r is not None]

    def _generate_group(
        self, model: Any, tokenizer: Any, requests: list[LMRequest]
    ) -> list[RawCompletion]:
        """One group: tokenize, sort by length, generate chunk by chunk, answer in order."""
        gen = _generation_kwargs(requests[0].kwargs, model, tokenizer)
        n = int(requests[0].kwargs.get("n") or 1)
        prompts = [
            tokenizer.apply_chat_template(
                [dict(m) for m in r.messages], add_generation_prompt=True, tokenize=False
            )
            for r in requests
        ]
        ids: list[list[int]] = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        out: list[RawCompletion | None] = [None] * len(requests)
        for chunk in self._chunks(model, ids, gen):
            rows = self._run_chunk(model, tokenizer, [ids[i] for i in chunk], gen, n)
            for i, (texts, reasons, used) in zip(chunk, rows, strict=True):
                out[i] = RawCompletion(
                    texts=texts,
                    prompt_tokens=len(ids[i]),
                    completion_tokens=used,
                    finish_reasons=reasons,
                    model=requests[i].model,
                )
        return [r for r in out if r is not None]

    def _chunks(self, model: Any, ids: list[list[int]], gen: Mapping[str, Any]) -> list[list[int]]:
        """The group's generates on this device (see :func:`plan_batches`)."""
        device = probe_device(str(model.device))
        return plan_batches(
            [len(x) for x in ids],
            new_tokens=int(gen["max_new_tokens"]),
            n=int(gen["num_return_sequences"]),
            cap=self.max_batch or _MAX_BATCH.get(device.kind, 64),
            budget=batch_token_budget(device, _bytes_per_token(model.config, model.dtype.itemsize)),
        )

    def _run_chunk(
        self, model: Any, tokenizer: Any, ids: list[list[int]], gen: Mapping[str, Any], n: int
    ) -> list[tuple[list[str], list[str], int]]:
        """Generate for left-padded ``ids``: per prompt its texts, finish reasons and
        completion-token count."""
        import torch

        width = max(len(x) for x in ids)
        pad = tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[row, width - len(x) :] = 1
        with _GENERATE_LOCK, torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            output = model.generate(
                input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device), **gen
            )
        self.stats.add(len(ids))
        return _decode(tokenizer, output[:, width:].tolist(), gen, len(ids), n)

    async def aclose(self) -> None:
        worker, queue, self._worker, self._queue = self._worker, self._queue, None, None
        while queue is not None and not queue.empty():
            queue.get_nowait()[1].cancel()  # not started: their callers stop waiting
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker


def _generate_thread() -> ThreadPoolExecutor:
    global _GENERATE_THREAD
    with _MODELS_LOCK:
        if _GENERATE_THREAD is None:
            _GENERATE_THREAD = ThreadPoolExecutor(1, thread_name_prefix="dspex-generate")
        return _GENERATE_THREAD


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a turn: the tokenizer's and the generation config's (chat
    models often end a turn with a token other than the tokenizer's end-of-sequence)."""
    found = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in found if isinstance(i, int))


def _generation_kwargs(kwargs: Mapping[str, Any], model: Any, tokenizer: Any) -> dict[str, Any]:
    temperature = float(kwargs.get("temperature") or 0.0)
    limit = token_limit(kwargs)
    n = int(kwargs.get("n") or 1)
    gen: dict[str, Any] = {
        "max_new_tokens": limit if limit is not None else _DEFAULT_MAX_TOKENS,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": _eos_ids(model, tokenizer),
        # Greedy choices are all the same: generate one, copy it n times (_decode).
        "num_return_sequences": n if temperature > 0 else 1,
        "do_sample": temperature > 0,
    }
    if temperature > 0:
        gen["temperature"] = temperature
        if kwargs.get("top_p") is not None:
            gen["top_p"] = float(kwargs["top_p"])
    return gen


def _decode(
    tokenizer: Any, rows: Sequence[list[int]], gen: Mapping[str, Any], prompts: int, n: int
) -> list[tuple[list[str], list[str], int]]:
    """Per prompt (``n`` choices, from as many rows or, greedy, one row copied): the texts up
    to end-of-sequence, ``"stop"`` if it came or ``"length"`` if ``max_new_tokens`` cut the
    row first, and the tokens generated."""
    eos = set(gen["eos_token_id"])
    per_prompt = int(gen["num_return_sequences"])
    rows = [row for row in rows for _ in range(n // per_prompt)]
    kept: list[list[int]] = []
    reasons: list[str] = []
    for row in rows:
        end = next((j for j, token in enumerate(row) if token in eos), None)
        kept.append(row[: end if end is not None else len(row)])
        reasons.append("stop" if end is not None else "length")
    texts = tokenizer.batch_decode(kept, skip_special_tokens=True)
    out = []
    for p in range(prompts):
        span = range(p * n, (p + 1) * n)
        # Tokens generated: the kept ones plus the end-of-sequence token where it came.
        used = sum(len(kept[j]) + (reasons[j] == "stop") for j in span)
        out.append(([texts[j] for j in span], [reasons[j] for j in span], used))
    return out


def settings_key(kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be equal for two requests to share a ``generate``: every generation
    parameter (values compared by their ``repr``, so unhashable ones work too)."""
    return tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
