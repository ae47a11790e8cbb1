"""The OpenAI path's HTTP/1.1 client against a byte-level loopback server: framing,
keep-alive reuse, dropped and idle-closed connections, timeouts, cancelled streams, HTTPS."""

from __future__ import annotations

import asyncio
import datetime
import gc
import ipaddress
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dspex.errors import ConfigurationError, LMRateLimitError, LMServerError, LMTimeoutError
from dspex.lm import LM
from tests.lm._raw_server import (
    Raw,
    RawServer,
    completion_body,
    gzip_reply,
    json_reply,
    sse_pieces,
)

MESSAGES = [{"role": "user", "content": "Say words."}]


@pytest.fixture
def raw() -> Iterator[RawServer]:
    srv = RawServer().start()
    yield srv
    srv.stop()


def lm_for(srv: RawServer, **kwargs: Any) -> LM:
    return LM("openai/m", api_base=srv.base, cache=False, retry_backoff=(0.0, 0.0), **kwargs)


async def closed(srv: RawServer, n: int) -> bool:
    return await asyncio.to_thread(srv.wait_closed, n)


async def test_chunked_split_and_gzip_answers_on_one_keep_alive_connection(raw: RawServer) -> None:
    whole = json_reply(completion_body("split"))
    raw.push(
        Raw([json_reply(completion_body("chunked"), chunked=True)]),
        Raw([whole[:10], whole[10:40], whole[40:-5], whole[-5:]], pause=0.01),
        Raw([gzip_reply(completion_body("zipped"))]),
    )
    lm = lm_for(raw)
    assert await lm.acall("a") == ["chunked"]
    assert await lm.acall("b") == ["split"]
    assert await lm.acall("c") == ["zipped"]
    assert raw.accepted == 1
    head = raw.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{raw.port}".encode() in head
    assert b"Content-Type: application/json" in head
    assert not any(line.lower().startswith(b"authorization") for line in head)


async def test_error_status_headers_are_read_case_insensitively(raw: RawServer) -> None:
    body = b'{"error": {"message": "slow down"}}'
    raw.push(Raw([json_reply(body, 429, b"retry-after: 0\r\n")]))
    lm = lm_for(raw, num_retries=0)
    with pytest.raises(LMRateLimitError) as info:
        await lm.acall("x")
    assert info.value.retry_after == 0.0 and "slow down" in str(info.value)
    assert await lm.acall("y") == ["hello"]  # an error answer leaves the connection usable
    assert raw.accepted == 1


async def test_closed_connections_are_replaced(raw: RawServer) -> None:
    raw.push(
        Raw([json_reply(completion_body("bye"), headers=b"Connection: close\r\n")], close=True),
        Raw([json_reply(completion_body())]),  # on a new connection
        Raw([json_reply(completion_body("last"))], close=True),  # closed while idle, unsaid
    )
    lm = lm_for(raw, num_retries=0)
    assert await lm.acall("a") == ["bye"]
    assert await lm.acall("b") == ["hello"]
    assert await lm.acall("c") == ["last"]
    assert await closed(raw, 2)
    assert await lm.acall("d") == ["hello"]
    assert raw.accepted == 3


async def test_a_request_dropped_on_a_reused_connection_is_sent_again_once(
    raw: RawServer,
) -> None:
    lm = lm_for(raw, num_retries=0)
    assert await lm.acall("warm") == ["hello"]
    # The server drops the next request unanswered, as one closing an idle keep-alive
    # connection just as the request leaves: the client resends it on a fresh connection.
    raw.push(Raw(close=True))
    assert await lm.acall("again") == ["hello"]
    assert (raw.accepted, len(raw.requests)) == (2, 3)
    # On a fresh connection the same drop is a failure (no resend loop).
    raw.push(Raw(close=True), Raw(close=True))
    await lm.aclose()
    with pytest.raises(LMServerError, match="connection to the provider failed"):
        await lm.acall("dropped")
    assert len(raw.requests) == 4


async def test_a_timeout_closes_the_unfinished_connection(raw: RawServer) -> None:
    raw.push(Raw([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"], hang=True))
    lm = lm_for(raw, timeout=0.2, num_retries=0)
    with pytest.raises(LMTimeoutError):
        await lm.acall("x")
    assert await closed(raw, 1)
    assert await lm.acall("y") == ["hello"]
    assert raw.accepted == 2


async def test_a_stream_read_to_its_end_keeps_the_connection(raw: RawServer) -> None:
    raw.push(Raw(sse_pieces(["x", " y"]), pause=0.01))
    lm = lm_for(raw)
    stream = lm.astream(MESSAGES)
    assert [t async for t in stream] == ["x", " y"]
    assert stream.response.outputs == ["x y"]
    assert await lm.acall("after") == ["hello"]
    assert raw.accepted == 1


async def test_cancelling_a_stream_closes_its_connection(raw: RawServer) -> None:
    raw.push(Raw(sse_pieces(["a", " b", " c"])[:3], hang=True))  # a first word, then silence
    lm = lm_for(raw)
    got: list[str] = []

    async def consume() -> None:
        async for text in lm.astream(MESSAGES):
            got.append(text)

    task = asyncio.create_task(consume())
    for _ in range(500):
        if got:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == ["a"]
    assert await closed(raw, 1)


async def test_a_stalled_stream_times_out(raw: RawServer) -> None:
    raw.push(Raw(sse_pieces(["a", " b"])[:2], hang=True))
    lm = lm_for(raw, timeout=0.2, num_retries=0)
    with pytest.raises(LMTimeoutError, match="stalled"):
        async for _ in lm.astream(MESSAGES):
            pass


async def test_bad_headers_and_urls_are_refused_before_sending(raw: RawServer) -> None:
    lm = lm_for(raw)
    with pytest.raises(ConfigurationError) as info:
        await lm.acall("x", extra_headers={"X-Key": "sk-secret-123\r\nEvil: 1"})
    assert "sk-secret-123" not in str(info.value)
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        await LM("openai/m", api_base="ftp://127.0.0.1/v1", cache=False).acall("x")
    assert not raw.requests


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (PEM files: cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dspex test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_verifies_the_server_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = RawServer(context).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        lm = lm_for(srv, num_retries=0)
        assert await lm.acall("a") == ["hello"]
        assert await lm.acall("b") == ["hello"]
        assert srv.accepted == 1
        await lm.aclose()
        monkeypatch.delenv("SSL_CERT_FILE")  # the certificate is no longer trusted
        with pytest.raises(LMServerError, match="CERTIFICATE_VERIFY_FAILED"):
            await lm.acall("c")
    finally:
        srv.stop()


def test_a_loop_closed_by_hand_leaves_no_socket_open(raw: RawServer) -> None:
    lm = lm_for(raw)
    loop = asyncio.new_event_loop()
    assert loop.run_until_complete(lm.acall("a")) == ["hello"]
    loop.close()  # without shutting down its async generators: its pool cannot close there
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(lm.acall("b")) == ["hello"]  # the next pool lets go of that one's
        gc.collect()  # an unclosed transport warns when collected
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert raw.wait_closed(2) and raw.accepted == 2
