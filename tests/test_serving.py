"""dspex._serving: the OpenAI bodies and the threaded JSON server every loopback server shares."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from dspex._jsonable import dumps
from dspex._serving import (
    chat_completion,
    error_body,
    make_json_server,
    model_list,
    server_url,
    set_nodelay,
)
from dspex.lm._openai import parse_completion


def test_chat_completion_has_the_openai_shape() -> None:
    body = chat_completion(
        "m",
        ["a", "b", "c"],
        prompt_tokens=7,
        completion_tokens=3,
        finish_reasons=["stop", "length"],
        completion_id="chatcmpl-1",
        created=12,
    )
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 12,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"},
            {
                "index": 1,
                "message": {"role": "assistant", "content": "b"},
                "finish_reason": "length",
            },
            # a missing finish reason is "stop"
            {"index": 2, "message": {"role": "assistant", "content": "c"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def test_chat_completion_defaults_and_round_trip_through_the_client_parser() -> None:
    first = chat_completion("m", ["x"], prompt_tokens=1, completion_tokens=2)
    second = chat_completion("m", ["x"], prompt_tokens=1, completion_tokens=2)
    assert first["id"].startswith("chatcmpl-") and first["id"] != second["id"]
    assert isinstance(first["created"], int) and first["created"] > 0
    raw = parse_completion(dumps(first), "m")  # what dspex's own client reads back
    assert (raw.texts, raw.prompt_tokens, raw.completion_tokens) == (["x"], 1, 2)
    assert list(raw.finish_reasons) == ["stop"]


def test_error_and_model_list_bodies() -> None:
    assert error_body("no", "not_found") == {"error": {"message": "no", "type": "not_found"}}
    assert model_list("a", "b") == {
        "object": "list",
        "data": [{"id": "a", "object": "model"}, {"id": "b", "object": "model"}],
    }


def _fail(_: Any) -> tuple[int, dict[str, Any]]:
    raise RuntimeError("boom")


def _leak(_: Any) -> tuple[int, dict[str, Any]]:
    raise RuntimeError("upstream refused key sk-live-abcdef0123456789")


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = make_json_server(
        {
            ("GET", "/v1/models"): lambda _: (200, model_list("m")),
            ("POST", "/echo/"): lambda body: (201, {"got": body}),
            ("POST", "/fail"): _fail,
            ("POST", "/leak"): _leak,
        }
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _call(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, Any]:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_json_server_routes_and_errors_on_one_keep_alive_connection(
    server: ThreadingHTTPServer,
) -> None:
    url = urlsplit(server_url(server))
    assert url.hostname == "127.0.0.1" and url.port
    conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=5)
    try:
        assert _call(conn, "GET", "/v1/models/") == (200, model_list("m"))
        assert _call(conn, "POST", "/echo?x=1", b'{"a": [1]}') == (201, {"got": {"a": [1]}})
        assert _call(conn, "POST", "/echo", b"") == (201, {"got": {}})
        status, body = _call(conn, "POST", "/echo", b"{not json")
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        assert "invalid request body" in body["error"]["message"]
        status, body = _call(conn, "GET", "/echo")
        assert status == 405 and body["error"]["message"] == "use POST"
        # A 404 for a POST still consumes its body, so the next request is read cleanly.
        status, body = _call(conn, "POST", "/nope", b'{"ignored": true}')
        assert status == 404 and body == error_body("no route /nope", "not_found")
        status, body = _call(conn, "POST", "/fail", b"{}")
        assert status == 500 and body == error_body("RuntimeError: boom", "server_error")
        assert _call(conn, "GET", "/v1/models") == (200, model_list("m"))
    finally:
        conn.close()


def test_an_error_body_never_carries_a_key(server: ThreadingHTTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(server_url(server)).port, timeout=5)
    try:
        status, body = _call(conn, "POST", "/leak", b"{}")
    finally:
        conn.close()
    assert status == 500 and body["error"]["type"] == "server_error"
    assert "upstream refused key" in body["error"]["message"]
    assert "sk-live-abcdef0123456789" not in body["error"]["message"]


def test_set_nodelay() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        set_nodelay(sock)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
