"""LM credentials in flow parameters are references, resolved where the task runs: the secret
reaches the provider and never Prefect's database (which stores parameters in plain text)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
from prefect.client.orchestration import get_client

from dspex.flows.fewshot import FLOWS
from dspex.optimize import OptimizeParams
from tests.lm._server import ScriptedServer

SENTINEL = "Bearer sentinel-gateway-7f3a9c"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    yield srv
    srv.stop()


def _params(url: str, tmp_path: Path, lm: dict[str, object]) -> OptimizeParams:
    return OptimizeParams.model_validate(
        {
            "program": "predict:question -> answer",
            "optimizer": "LabeledFewShot",
            "settings": {"k": 1},
            "trainset": {"task": "arithmetic", "train_size": 4},
            "valset": {"task": "arithmetic", "split": "dev", "train_size": 4, "dev_size": 2},
            "lm": {"model": "openai/gateway-model", "api_base": url, **lm},
            "runs_dir": str(tmp_path),
        }
    )


@pytest.mark.parametrize("key", ["extra_headers", "headers"])
def test_a_secret_header_in_the_parameters_is_refused_up_front(tmp_path: Path, key: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="env:VAR"):
        _params("http://127.0.0.1:9/v1", tmp_path, {"kwargs": {key: {"Authorization": "x"}}})


def test_a_secret_value_is_not_a_reference(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="not the secret"):
        _params("http://127.0.0.1:9/v1", tmp_path, {"headers": {"Authorization": SENTINEL}})


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_header_reference_reaches_the_provider_not_the_flow_parameters(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSPEX_TEST_GATEWAY_AUTH", SENTINEL)
    params = _params(
        server.base,
        tmp_path,
        {"headers": {"Authorization": "env:DSPEX_TEST_GATEWAY_AUTH"}, "kwargs": {"cache": False}},
    )
    FLOWS["LabeledFewShot"](params)
    assert server.seen, "the flow made no LM call"
    assert {s.headers.get("Authorization") for s in server.seen} == {SENTINEL}
    with get_client(sync_client=True) as client:
        stored = json.dumps([run.parameters for run in client.read_flow_runs(limit=200)])
    assert "DSPEX_TEST_GATEWAY_AUTH" in stored  # the reference is stored...
    assert "sentinel-gateway" not in stored  # ...never the secret


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_missing_variable_names_the_reference_not_a_value(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dspex.errors import ConfigurationError

    monkeypatch.delenv("DSPEX_TEST_MISSING_AUTH", raising=False)
    params = _params(
        server.base, tmp_path, {"headers": {"Authorization": "env:DSPEX_TEST_MISSING_AUTH"}}
    )
    with pytest.raises(ConfigurationError, match="export DSPEX_TEST_MISSING_AUTH"):
        FLOWS["LabeledFewShot"](params)
    assert not server.seen
