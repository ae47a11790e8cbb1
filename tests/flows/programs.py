"""Programs, data and metrics the flow tests refer to by import path."""

from __future__ import annotations

import dspex
from dspex.datasets import load_task

TASK = load_task("arithmetic")
SPLITS = TASK.split(train=40, dev=60, seed=0)
TRAIN = SPLITS.train
DEV = SPLITS.dev


def solver() -> dspex.Module:
    return dspex.ChainOfThought("question -> answer: int")


def exact(example: dspex.Example, prediction: dspex.Prediction, trace: object = None) -> bool:
    return bool(example.answer == prediction.answer)
