"""Fixtures for the LM tests: loopback servers started and stopped by each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lm._server import ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def server2() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    yield srv
    srv.stop()
