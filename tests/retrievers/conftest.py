"""A loopback OpenAI-compatible server whose ``/v1/embeddings`` the dense tests embed with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dspex.testing import DummyLM, RunningServer, serve


@pytest.fixture(scope="module")
def embed_server() -> Iterator[RunningServer]:
    with serve(DummyLM([])) as srv:
        yield srv
