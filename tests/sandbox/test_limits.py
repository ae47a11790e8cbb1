"""A wall-clock timeout and a memory cap stop the code; the interpreter works again after."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dspex
from dspex.sandbox import (
    CodeInterpreterError,
    PythonInterpreter,
    SandboxMemoryError,
    SandboxTimeoutError,
)


@pytest.fixture(scope="module")
def timed(sandbox_cache: Path) -> Iterator[PythonInterpreter]:
    with PythonInterpreter(cache_dir=sandbox_cache, timeout=3) as interpreter:
        interpreter.start()  # start-up is not part of a call's timeout: measure calls only
        yield interpreter


@pytest.fixture(scope="module")
def capped(sandbox_cache: Path) -> Iterator[PythonInterpreter]:
    # A generous timeout: a slow machine must reach the cap, not the timeout.
    with PythonInterpreter(cache_dir=sandbox_cache, memory_limit_mb=128, timeout=120) as interp:
        yield interp


def _recovers(interpreter: PythonInterpreter, old_pid: int | None) -> None:
    assert interpreter.pid is None  # stopped, by PID
    assert interpreter("sum(range(5))") == 10  # a fresh process, started transparently
    assert interpreter.pid not in (None, old_pid)
    with pytest.raises(CodeInterpreterError, match="NameError"):
        interpreter("kept")  # the stopped process's variables are gone


def test_an_infinite_loop_is_stopped_at_its_timeout(timed: PythonInterpreter) -> None:
    timed("kept = 1")
    pid = timed.pid
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError, match="ran past its 3 s timeout") as caught:
        timed("while True:\n    pass")
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 3 + 5
    assert isinstance(caught.value, CodeInterpreterError | dspex.DspexError)
    _recovers(timed, pid)


def test_a_memory_hog_is_stopped_at_its_cap(capped: PythonInterpreter) -> None:
    capped("kept = 1")
    pid = capped.pid
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(2**20))"
    with pytest.raises(SandboxMemoryError, match="128 MiB memory limit"):
        capped(hog)
    _recovers(capped, pid)


def test_memory_outside_python_s_heap_meets_the_hard_cap(capped: PythonInterpreter) -> None:
    # JavaScript buffers bypass Pyodide's allocator (and so the soft cap); the host watches
    # the process's resident memory and kills it past the limit plus the engine's overhead.
    capped("kept = 1")
    pid = capped.pid
    hog = (
        "import js\nbuffers = []\nwhile True:\n"
        "    buffer = js.Uint8Array.new(32 * 2**20)\n    buffer.fill(1)\n    buffers.append(buffer)"
    )
    with pytest.raises(SandboxMemoryError, match="hard cap"):
        capped(hog)
    _recovers(capped, pid)
