"""A sentinel API key never shows up anywhere dspex writes or prints."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dspex.errors import LMAuthError, LMServerError
from dspex.lm import LM, default_cache, inspect_history
from dspex.lm._history import GLOBAL_HISTORY
from tests.lm._server import Reply, ScriptedServer, user

SENTINEL = "sk-test-SENTINEL-123456"


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


async def test_sentinel_key_appears_nowhere(server: ScriptedServer, tmp_path: Path) -> None:
    lm = LM("openai/sim", api_base=server.base, api_key=SENTINEL, temperature=0.1)
    await lm.aforward(user("hello"), n=2)
    await lm.aforward(user("hello"), n=2)  # a cache hit, recorded too
    assert server.seen[0].headers["Authorization"] == f"Bearer {SENTINEL}"

    # The server echoes the key back in an error body; the error must not carry it.
    echo = {"error": {"message": f"Incorrect API key provided: {SENTINEL}", "code": "401"}}
    server.push(Reply(401, echo))
    with pytest.raises(LMAuthError) as info:
        await lm.aforward(user("other"))
    text = str(info.value) + repr(info.value) + "".join(getattr(info.value, "__notes__", []))
    assert SENTINEL not in text and "[REDACTED]" in text

    server.push(Reply(500, f"upstream saw Bearer {SENTINEL}".encode()))
    with pytest.raises(LMServerError) as info5:
        await lm.copy(num_retries=0).aforward(user("again"))
    assert SENTINEL not in str(info5.value)

    assert SENTINEL not in repr(lm)
    assert SENTINEL not in json.dumps(lm.dump_config())
    assert SENTINEL not in repr(lm.transport)
    for entry in [*lm.history, *GLOBAL_HISTORY]:
        assert SENTINEL not in repr(entry)
        assert SENTINEL not in json.dumps(entry.to_dict())
    shown = inspect_history(n=5, file=io.StringIO())
    assert "hello" in shown and SENTINEL not in shown
    assert SENTINEL not in lm.inspect_history(n=5, file=io.StringIO())

    store = default_cache()
    assert store is not None
    store.flush()
    assert SENTINEL.encode() not in _all_bytes(store.directory)
    assert _all_bytes(store.directory)  # the cache did write something


def test_credential_kwargs_stay_out_of_params_and_config() -> None:
    lm = LM("bedrock/some-model", aws_secret_access_key="AKIA-SENTINEL-SECRET-1", temperature=0)
    assert lm.kwargs == {"temperature": 0}
    assert "AKIA-SENTINEL-SECRET-1" not in json.dumps(lm.dump_config())
    assert "AKIA-SENTINEL-SECRET-1" not in repr(lm)


async def test_per_call_credentials_are_refused(server: ScriptedServer) -> None:
    from dspex.errors import UserError

    lm = LM("openai/sim", api_base=server.base)
    with pytest.raises(UserError, match="per call"):
        await lm.aforward(user("x"), api_key=SENTINEL)
    assert server.count == 0


def test_api_base_credentials_are_redacted_in_config() -> None:
    lm = LM("openai/sim", api_base=f"http://127.0.0.1:1/v1?key={SENTINEL}", api_key=SENTINEL)
    assert SENTINEL not in json.dumps(lm.dump_config())
    assert SENTINEL not in repr(lm)
