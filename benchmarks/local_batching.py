"""``dspex.Evaluate`` over a local model vs one batched ``generate``, side by side in one run.

Both sides answer the same N chat prompts (arithmetic questions, the model's chat template)
with the same model, greedy, ``max_new_tokens`` = ``--max-tokens``:

* **generate**: the prompts tokenized, left-padded and passed to ``model.generate`` in
  batches of ``--batch`` (one batch when ``--batch`` >= N), timed from tokenizing to decoding,
  in a worker thread as the transport runs it (on a busy CPU, torch's OpenMP threads started
  from the main thread were several times slower, which would flatter dspex's side);
* **Evaluate**: ``dspex.Evaluate(concurrency=--concurrency)`` over a module that sends each
  prompt through ``dspex.LM("local/<model>", cache=False)`` (the ``TransformersTransport``,
  its batches capped at ``--batch`` too), timed by Evaluate itself.

The runs alternate (``--repeats`` of each), so the machine's load hits both alike; the table
gives the best and the median run of each side, and each side's process CPU seconds (which a
busy shared machine disturbs far less than wall time). Examples/s are prompts answered per
second; ratios are Evaluate's throughput over generate's. Without ``--model`` a tiny
Llama-architecture model is built locally (``dspex.testing.build_tiny_causal_lm``, no
download; ``--hidden``/``--layers`` size it). On a GPU the model runs there (in bfloat16 where
supported, as the transport loads it).

Usage::

    python benchmarks/local_batching.py                      # the table in docs/performance.md
    python benchmarks/local_batching.py --hidden 1024 --layers 8 -n 512 --batch 64   # GPU
    python benchmarks/local_batching.py --model /path/to/hf-model --max-tokens 64
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dspex
from dspex.datasets import load_task
from dspex.lm._hf import TransformersTransport, load_local_model
from dspex.testing import build_tiny_causal_lm


def _questions(n: int) -> list[str]:
    base = [str(ex.question) for ex in load_task("arithmetic").examples]
    return [f"{base[i % len(base)]} (#{i})" for i in range(n)]


def generate_side(path: str, questions: list[str], batch: int, max_tokens: int) -> float:
    """Seconds for batched ``model.generate`` over every prompt (tokenize to decode)."""
    import torch

    model, tokenizer = load_local_model(path)
    started = time.perf_counter()
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
        )
        for q in questions
    ]
    for i in range(0, len(prompts), batch):
        encoded = tokenizer(
            prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


class _Ask(dspex.Module):
    def __init__(self, lm: dspex.LM) -> None:
        super().__init__()
        self.local = lm

    async def aforward(self, question: str) -> dspex.Prediction:
        texts = await self.local.acall(messages=[{"role": "user", "content": question}])
        return dspex.Prediction(answer=texts[0])


def evaluate_side(
    path: str, questions: list[str], batch: int, max_tokens: int, concurrency: int
) -> tuple[float, float]:
    """Seconds for ``Evaluate`` over every prompt through ``LM("local/...")``, and the mean
    number of prompts per ``generate`` the transport ran."""
    transport = TransformersTransport(path, max_batch=batch)
    lm = dspex.LM(f"local/{path}", transport=transport, cache=False, max_tokens=max_tokens)
    devset = [dspex.Example(question=q, answer="").with_inputs("question") for q in questions]
    evaluate = dspex.Evaluate(
        devset=devset,
        metric=lambda ex, pred, trace=None: 0.0,
        concurrency=concurrency,
        progress=False,
    )
    try:
        result = evaluate(_Ask(lm))
    finally:
        lm.close()
    if result.n_errors:
        raise SystemExit(f"{result.n_errors} examples failed: {result.errors[0].error}")
    stats = transport.stats
    return result.elapsed_s, stats.sequences / max(1, stats.generate_calls)


_GENERATE_THREAD = ThreadPoolExecutor(1, thread_name_prefix="baseline-generate")


def _in_thread(path: str, questions: list[str], batch: int, max_tokens: int) -> float:
    # One long-lived thread, as the transport's: torch keeps one OpenMP team per thread.
    return _GENERATE_THREAD.submit(generate_side, path, questions, batch, max_tokens).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=256, help="prompts")
    parser.add_argument("--batch", type=int, default=64, help="most prompts per generate")
    parser.add_argument("--concurrency", type=int, default=0, help="Evaluate's; 0: 2 x batch")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a Hugging Face model directory (default: build one)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    logging.getLogger("dspex.lm").setLevel(logging.ERROR)  # every answer hits max_tokens
    questions = _questions(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or str(
            build_tiny_causal_lm(
                tmp, questions, hidden_size=args.hidden, layers=args.layers, heads=4
            )
        )
        report = _measure(path, questions, args)
    print(_table(report))
    if args.json:
        print(json.dumps(report))


def _measure(path: str, questions: list[str], args: Any) -> dict[str, Any]:
    concurrency = args.concurrency or 2 * args.batch
    # Warm both paths (weights loaded, kernels chosen) on a few prompts first.
    _in_thread(path, questions[: args.batch], args.batch, args.max_tokens)
    evaluate_side(path, questions[: args.batch], args.batch, args.max_tokens, concurrency)
    gen_s, eval_s, gen_cpu, eval_cpu, sizes = [], [], [], [], []
    for _ in range(args.repeats):
        cpu = time.process_time()
        gen_s.append(_in_thread(path, questions, args.batch, args.max_tokens))
        gen_cpu.append(time.process_time() - cpu)
        cpu = time.process_time()
        seconds, size = evaluate_side(path, questions, args.batch, args.max_tokens, concurrency)
        eval_cpu.append(time.process_time() - cpu)
        eval_s.append(seconds)
        sizes.append(size)
    model, _ = load_local_model(path)
    n = len(questions)
    gen_rate, eval_rate = n / min(gen_s), n / min(eval_s)
    return {
        "device": _device_name(model),
        "dtype": str(model.dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "prompts": n,
        "batch": args.batch,
        "concurrency": concurrency,
        "max_tokens": args.max_tokens,
        "generate_examples_per_s": gen_rate,
        "evaluate_examples_per_s": eval_rate,
        "ratio": eval_rate / gen_rate,
        "median_ratio": statistics.median(gen_s) / statistics.median(eval_s),
        "cpu_ratio": statistics.median(gen_cpu) / statistics.median(eval_cpu),
        "mean_batch": statistics.mean(sizes),
        "runs": {"generate_s": gen_s, "evaluate_s": eval_s},
        "cpu": {"generate_s": gen_cpu, "evaluate_s": eval_cpu},
    }


def _device_name(model: Any) -> str:
    import torch

    if model.device.type == "cuda":
        return str(torch.cuda.get_device_name(model.device))
    return str(model.device.type)


def _table(r: dict[str, Any]) -> str:
    local = f'`Evaluate` + `LM("local/...")` (mean batch {r["mean_batch"]:.1f})'
    return "\n".join(
        [
            f"device {r['device']}, {r['dtype']}, {r['parameters']:,} parameters; "
            f"{r['prompts']} prompts, batch {r['batch']}, Evaluate concurrency "
            f"{r['concurrency']}, max_tokens {r['max_tokens']}, "
            f"{len(r['runs']['generate_s'])} alternating runs each",
            "| path | examples/s (best run) | vs generate: best | median | CPU time |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| batched `model.generate` | {r['generate_examples_per_s']:,.1f} | 1.00 | 1.00 | "
            "1.00 |",
            f"| {local} | {r['evaluate_examples_per_s']:,.1f} | {r['ratio']:.2f} | "
            f"{r['median_ratio']:.2f} | {r['cpu_ratio']:.2f} |",
        ]
    )


if __name__ == "__main__":
    main()
