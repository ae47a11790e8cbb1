"""The checks ``Evaluate`` makes: rows that cannot run or lack labels are refused before any
LM call, and a metric value that is no score stops the run naming the row."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

from dspex._redact import redact_text
from dspex.errors import DataError, MetricError
from dspex.primitives import Example, Module

__all__ = [
    "bool_style",
    "checked_score",
    "program_outputs",
    "required_inputs",
    "row_id_of",
    "validate_devset",
    "validate_labels",
]


def row_id_of(example: Example, index: int) -> Any:
    return example.get("id", index) if isinstance(example, Example) else index


def required_inputs(program: Module | Callable[..., Any]) -> list[str] | None:
    """The input names a program needs, when they can be known without calling it. A
    program may also be a plain function of the inputs, as DSPy's ``Evaluate`` allows."""
    from dspex.modules import ChainOfThought, Predict

    if isinstance(program, Predict):
        return list(program.signature.input_fields)
    if isinstance(program, ChainOfThought):
        return list(program.predict.signature.input_fields)
    if not isinstance(program, Module):
        forward: Callable[..., Any] = program
    elif type(program).forward is not Module.forward:
        forward = program.forward
    else:
        forward = program.aforward
    try:
        params = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def validate_devset(devset: Sequence[Example], program: Module | Callable[..., Any]) -> None:
    """Reject rows that cannot run, before any LM call, naming the row ids."""
    if not devset:
        raise DataError("The devset is empty; pass at least one Example.")
    no_inputs = [
        row_id_of(ex, i) for i, ex in enumerate(devset) if getattr(ex, "input_keys", None) is None
    ]
    if no_inputs:
        raise DataError(
            f"{len(no_inputs)} row(s) have no declared inputs (ids {no_inputs[:20]}); build "
            "examples with Example(...).with_inputs('question', ...) or a dataset loader's "
            "input_keys=.",
            row_ids=no_inputs,
        )
    needed = required_inputs(program)
    if needed is None:
        return
    bad = [
        (row_id_of(ex, i), sorted(set(needed) - set(ex.input_keys or ())))
        for i, ex in enumerate(devset)
        if not set(needed) <= set(ex.input_keys or ())
    ]
    if bad:
        missing = sorted({k for _, ks in bad for k in ks})
        raise DataError(
            f"{len(bad)} row(s) lack input(s) {missing} that {type(program).__name__} needs "
            f"(ids {[i for i, _ in bad][:20]}). Fix the data or declare them with with_inputs().",
            row_ids=[i for i, _ in bad],
        )


def program_outputs(program: Module | Callable[..., Any]) -> list[str] | None:
    """The output names a program produces, when they can be known without calling it."""
    from dspex.modules import ChainOfThought, Predict

    if isinstance(program, Predict):
        return list(program.signature.output_fields)
    if isinstance(program, ChainOfThought):
        return list(program.predict.signature.output_fields)
    return None


def _metric_name(metric: Callable[..., Any]) -> str:
    return str(getattr(metric, "__name__", type(metric).__name__))


def _label_problems(example: Example, need: Any, outputs: list[str] | None) -> str | None:
    """Why ``example`` lacks a label the metric reads, or ``None`` when it has them all."""
    labels = example.labels()
    if need == "outputs":
        # The labels named like the program's outputs, as exact_match compares them.
        # Without known outputs, any label but the row id will do.
        names = [k for k in labels if (k in outputs if outputs is not None else k != "id")]
        if not any(labels[k] is not None for k in names):
            return f"no label for the outputs {outputs}" if outputs else "no label"
        nones = [k for k in names if labels[k] is None] if outputs is not None else []
    else:
        missing = [k for k in need if k not in labels]
        if missing:
            return f"missing label(s) {missing}"
        nones = [k for k in need if labels[k] is None]
    return f"label(s) {nones} are None" if nones else None


def validate_labels(
    devset: Sequence[Example], program: Module | Callable[..., Any], metric: Callable[..., Any]
) -> None:
    """Reject rows without the labels the metric declares it reads, before any LM call.

    A metric declares them in ``required_labels``: a tuple of label names, or ``"outputs"``
    for the labels named like the program's outputs (``exact_match``). A row lacking them
    would otherwise score 0 without saying why.
    """
    need = getattr(metric, "required_labels", None)
    if need is None:
        return
    outputs = program_outputs(program) if need == "outputs" else None
    problems: dict[str, list[Any]] = {}
    for i, ex in enumerate(devset):
        problem = _label_problems(ex, need, outputs)
        if problem is not None:
            problems.setdefault(problem, []).append(row_id_of(ex, i))
    if problems:
        row_ids = [rid for ids in problems.values() for rid in ids]
        detail = "; ".join(f"{p} (ids {ids[:20]})" for p, ids in problems.items())
        raise DataError(
            f"Metric {_metric_name(metric)} needs labels, but {len(row_ids)} row(s) lack them: "
            f"{detail}. Add the labels to those examples or drop the rows; unlabeled rows "
            "would score 0 without telling you.",
            row_ids=row_ids,
        )


def bool_style(metric: Callable[..., Any]) -> bool:
    """Whether the metric is annotated ``-> bool``, so its scores belong in [0, 1]."""
    try:
        annotation = inspect.signature(metric).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation is bool or annotation == "bool"


def checked_score(value: Any, metric: Callable[..., Any], row_id: Any, bool_style: bool) -> float:
    """The metric's value as a float; ``MetricError`` naming the row when it is no score."""
    problem = "is not a number"
    if not isinstance(value, str | bytes) and value is not None:
        try:
            score = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if not math.isfinite(score):
                problem = "is not a finite number"
            elif bool_style and not 0.0 <= score <= 1.0:
                problem = "is outside [0, 1], the range of a metric annotated -> bool"
            else:
                return score
    shown = redact_text(repr(value))
    shown = shown if len(shown) <= 80 else shown[:80] + "..."
    raise MetricError(
        f"Metric {_metric_name(metric)} returned {shown} ({type(value).__name__}) for row "
        f"{row_id!r}, which {problem}. A metric must return a bool or a finite number"
        f"{' in [0, 1]' if bool_style else ''}; fix the metric (e.g. return bool(...) or "
        "float(...), and handle the case that produced this value).",
        row_id=row_id,
        value=value,
    )
