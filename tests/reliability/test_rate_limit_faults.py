"""A deployment-wide LM rate limit removed or deactivated mid-run stops the next request with
a clear error: it never lets the run go on unthrottled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)

import dspex
from dspex.errors import ConfigurationError
from dspex.tasks.limits import lm_rate_limit
from dspex.testing import fetch_stats, start_server_process

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def url() -> Iterator[str]:
    with start_server_process("arithmetic") as srv:
        yield srv.url


def _lm(url: str) -> dspex.LM:
    return dspex.LM("openai/dspex-sim", api_base=url, cache=False, num_retries=0)


def _create(name: str) -> None:
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=100, slot_decay_per_second=100)
        )


@pytest.mark.parametrize("fault", ["deleted", "deactivated"])
def test_a_limit_gone_mid_run_fails_the_next_request(url: str, fault: str) -> None:
    name = f"dspex-lm-{fault}"
    _create(name)
    lm = _lm(url)
    with lm_rate_limit(name):
        assert lm("What is 2 + 2?")  # throttled and sent
        with get_client(sync_client=True) as client:
            if fault == "deleted":
                client.delete_global_concurrency_limit_by_name(name)
            else:
                client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(active=False)
                )
        sent = fetch_stats(url)["requests"]
        with pytest.raises(ConfigurationError, match=name):
            lm("What is 3 + 3?")
    assert fetch_stats(url)["requests"] == sent  # nothing went out unthrottled
