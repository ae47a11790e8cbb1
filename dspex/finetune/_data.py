"""Traces that passed the metric, as a chat-format SFT dataset per predictor."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dspex.adapters import ChatAdapter
from dspex.primitives import Module

__all__ = ["sft_rows", "write_sft"]


def sft_rows(
    program: Module, demos: Mapping[str, Sequence[Mapping[str, Any]]], adapter: Any = None
) -> dict[str, list[dict[str, Any]]]:
    """Per predictor, one ``{"prompt": [messages], "completion": [assistant message]}`` row per
    trace: the prompt the predictor sends (its instructions, no demos) and the answer that
    passed the metric, in the adapter's format (``ChatAdapter`` by default).

    Example:
        >>> import dspex
        >>> from dspex.finetune import sft_rows
        >>> qa = dspex.Predict("question -> answer: int")
        >>> rows = sft_rows(qa, {"self": [{"question": "1 + 1?", "answer": 2}]})
        >>> rows["self"][0]["completion"][0]["content"]
        '[[ ## answer ## ]]\\n2\\n\\n[[ ## completed ## ]]\\n'
    """
    adapter = adapter or ChatAdapter()
    out: dict[str, list[dict[str, Any]]] = {}
    for name, predictor in program.named_predictors():
        sig = predictor.signature
        rows = []
        for demo in demos.get(name, ()):
            if not all(f in demo for f in (*sig.input_fields, *sig.output_fields)):
                continue  # a partial trace (an input-only demo) teaches nothing
            inputs = {f: demo[f] for f in sig.input_fields}
            outputs = {f: demo[f] for f in sig.output_fields}
            rows.append(
                {
                    "prompt": adapter.format(sig, [], inputs),
                    "completion": [
                        {"role": "assistant", "content": adapter.assistant_message(sig, outputs)}
                    ],
                }
            )
        out[name] = rows
    return out


def write_sft(rows: Sequence[Mapping[str, Any]], directory: str | os.PathLike[str]) -> Path:
    """Write rows as ``train.jsonl`` and ``train.parquet`` (each to a temporary name first,
    then renamed, so a reader never sees half a file); returns the directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".train.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(out / "train.jsonl")
    table = pa.table(
        {
            "prompt": [json.dumps(r["prompt"], ensure_ascii=False) for r in rows],
            "completion": [json.dumps(r["completion"], ensure_ascii=False) for r in rows],
        }
    )
    tmp = out / ".train.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(out / "train.parquet")
    return out
