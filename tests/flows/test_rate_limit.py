"""The deployment-wide LM rate limit (a Prefect global concurrency limit with slot decay):
a configured limit that does not exist stops the run before any LM call; one that exists
lets through no more requests than it has slots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from dspex.errors import ConfigurationError
from dspex.flows.evaluate import evaluate
from dspex.optimize import EvaluateParams
from dspex.testing import start_server_process

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[str]:
    with start_server_process("arithmetic") as srv:
        yield srv.url


def _params(url: str, tmp_path: Path, limit: str) -> EvaluateParams:
    return EvaluateParams.model_validate(
        {
            "program": "cot:question -> answer: int",
            "dataset": {"task": "arithmetic", "split": "dev", "train_size": 10, "dev_size": 10},
            "lm": {"model": "openai/dspex-sim", "api_base": url, "kwargs": {"cache": False}},
            "lm_rate_limit": limit,
            "runs_dir": str(tmp_path),
        }
    )


def test_a_configured_but_missing_limit_fails_before_any_lm_call(
    server: str, tmp_path: Path
) -> None:
    from dspex.testing import fetch_stats

    with pytest.raises(ConfigurationError, match="prefect gcl create dspex-missing"):
        evaluate(_params(server, tmp_path, "dspex-missing"))
    assert fetch_stats(server)["requests"] == 0


def test_the_limit_bounds_the_requests_sent(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dspex.testing import fetch_stats

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="dspex-lm-3", limit=3, slot_decay_per_second=0.001)
        )
    monkeypatch.setenv("DSPEX_LM_RATE_LIMIT_TIMEOUT_S", "2")
    summary = evaluate(_params(server, tmp_path, "dspex-lm-3"))
    # Three slots, (almost) no refill: three requests went out, the other seven timed out
    # waiting for a slot and were recorded as failed examples.
    assert fetch_stats(server)["requests"] == 3
    assert summary["n"] == 10 and summary["errors"] == 7
