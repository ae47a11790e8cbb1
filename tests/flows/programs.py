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


# Smaller splits for subprocess compiles whose assertions do not depend on the data's size
# (kill/resume tests): each run makes fewer LM calls and Prefect tasks. TRAIN/DEV stay as
# they are for the tests that compare against them.
SMALL_SPLITS = TASK.split(train=16, dev=20, seed=0)
SMALL_TRAIN = SMALL_SPLITS.train
SMALL_DEV = SMALL_SPLITS.dev
