"""compile() reaches its program, data, metric and LM by reference; it releases them at the end."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

import dspex
from dspex.errors import UserError
from dspex.optimize._refs import register_object, registration_scope, resolve
from dspex.testing import SimulatedLM
from tests.flows.programs import TRAIN, exact, solver


def test_a_scope_releases_what_it_registered_once_no_other_scope_holds_it() -> None:
    program = solver()
    with registration_scope():
        outer = register_object(program)
        with registration_scope():
            inner = register_object(program)  # the same content: the same key
            assert inner == outer
        assert resolve(outer) is program  # still held by the outer scope
    with pytest.raises(UserError, match="not registered"):
        resolve(outer)


@pytest.mark.slow
def test_compile_keeps_nothing_alive_after_it_returns(tmp_path: Path) -> None:
    program = solver()
    trainset = list(TRAIN[:8])
    lm = SimulatedLM(task="arithmetic")
    optimizer = dspex.LabeledFewShot(k=2)
    optimizer.metric = exact
    best = optimizer.compile(program, trainset=trainset, lm=lm, runs_dir=tmp_path)
    assert len(best.predict.demos) == 2
    released = weakref.ref(program)
    del program
    gc.collect()
    assert released() is None  # the registry let the program go
