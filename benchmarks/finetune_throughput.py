"""LoRA training throughput: tokens/s, peak memory and the plan ``train_lora`` chose.

Builds a Llama-architecture model of the given size locally (``build_tiny_causal_lm``, random
weights, no download: throughput does not depend on what the weights know), bootstraps
chat rows from the arithmetic task in Predict's format, and trains a LoRA adapter for
``--steps`` steps with the device's plan (precision, batch size, gradient checkpointing; see
``dspex.finetune.plan_training``) unless ``--batch-size`` / ``--precision`` set it.

Usage::

    python benchmarks/finetune_throughput.py                          # tiny, CPU-sized
    python benchmarks/finetune_throughput.py --hidden 2048 --layers 24 --heads 16 --steps 30
        # ~1.0B parameters: the GPU figure for docs/performance.md

The built tokenizer's vocabulary is small (~600 tokens), so the logits cost far less than a
real model's 32k-150k vocabulary: tokens/s is an upper bound for a real model of that size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dspex
from dspex.datasets import load_task
from dspex.finetune import TrainSettings, sft_rows, train_lora
from dspex.testing import build_tiny_causal_lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=None)
    args = parser.parse_args()
    examples = list(load_task("arithmetic").examples)[: args.rows]
    program = dspex.Predict("question -> answer: int")
    rows = sft_rows(program, {"self": [dict(ex.items()) for ex in examples]})["self"]
    texts = [m["content"] for r in rows for m in (*r["prompt"], *r["completion"])]
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_causal_lm(
            Path(tmp) / "model",
            texts,
            hidden_size=args.hidden,
            layers=args.layers,
            heads=args.heads,
        )
        settings = TrainSettings(
            max_steps=args.steps,
            save_steps=10 * args.steps,  # no checkpoint inside the timed steps
            logging_steps=max(1, args.steps // 4),
            batch_size=args.batch_size,
            precision=args.precision,
        )
        started = time.perf_counter()
        out = train_lora(str(base), rows, Path(tmp) / "run", settings)
        total = time.perf_counter() - started
    keys = ("device", "precision", "batch_size", "gradient_checkpointing", "steps")
    report = {k: out[k] for k in keys}
    report.update(
        parameters=_parameters(args.hidden, args.layers),
        rows=len(rows),
        train_tokens=out["train_tokens"],
        train_seconds=round(out["train_seconds"], 2),
        tokens_per_s=round(out["tokens_per_s"], 1),
        peak_memory_mb=round(out["peak_memory_mb"], 1),
        total_seconds=round(total, 2),
    )
    print(json.dumps(report, indent=2))


def _parameters(hidden: int, layers: int) -> str:
    """Approximate parameter count of the layers (attention 4h^2 + MLP 3 x h x 2h)."""
    return f"~{layers * (4 * hidden * hidden + 6 * hidden * hidden) / 1e6:,.1f}M in the layers"


if __name__ == "__main__":
    main()
