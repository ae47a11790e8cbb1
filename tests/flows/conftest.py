"""Flows run for real: one Prefect test harness (a temporary server) per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _flows_use_the_server(prefect_server: None) -> None:
    """Every flow test runs against the session's Prefect server."""
