"""dspex.ColBERTv2 against the loopback ColBERTv2-protocol server: DSPy's protocol (GET and
POST), DSPy's return shape, tracing, and clear errors."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.errors import RetrievalError, UserError
from dspex.testing import RunningColBERT, serve_colbert

CORPUS = [
    "Paris | Paris is the capital and largest city of France.",
    "Berlin | Berlin is the capital of Germany.",
    "Rome | Rome is the capital of Italy, on the Tiber.",
    "Tiber | The Tiber is the third-longest river of Italy.",
    "Danube | The Danube flows through Vienna and Budapest.",
]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningColBERT]:
    with serve_colbert(CORPUS) as running:
        yield running


def test_get_returns_dspy_passages_best_first(server: RunningColBERT) -> None:
    colbert = dspex.ColBERTv2(url=server.url)
    top = colbert("longest river of Italy", k=2)
    assert [p["pid"] for p in top] == [3, 2]
    first = top[0]
    assert first.long_text == first["text"] == CORPUS[3]  # DSPy's dotdict access, both ways
    assert [p.rank for p in top] == [1, 2]
    assert top[0].score > top[1].score
    assert sum(p.prob for p in top) == pytest.approx(1.0)
    assert colbert("capital of Germany", k=1, simplify=True) == [CORPUS[1]]
    # DSPy's default k is 10: every passage that matches, no more than the corpus.
    assert len(colbert("capital")) == 3
    # The URL's own query string (a hosted endpoint's ?api_key=...) is kept; query and k join
    # it, form-encoded.
    keyed = dspex.ColBERTv2(url=f"{server.url}?api_key=tok-kept")
    assert keyed("capital of Germany & more", k=1, simplify=True) == [CORPUS[1]]


def test_post_with_dspy_url_and_port_matches_get(server: RunningColBERT) -> None:
    get = dspex.ColBERTv2(url=server.url)
    post = dspex.ColBERTv2(url=server.root, port=server.port, post_requests=True)
    assert post.url == f"{server.root}:{server.port}"
    assert post("Vienna Budapest", k=2) == get("Vienna Budapest", k=2)
    assert post("Vienna Budapest", k=1)[0].long_text == CORPUS[4]


def test_search_forward_retrieve_and_async_share_the_ranking(server: RunningColBERT) -> None:
    colbert = dspex.ColBERTv2(url=server.url, k=2)
    typed = colbert.search("capital of France")
    assert [(p.id, p.text) for p in typed] == [("0", CORPUS[0]), ("1", CORPUS[1])]
    assert typed[0].metadata["rank"] == 1
    assert colbert.forward("capital of France").passages == [CORPUS[0], CORPUS[1]]
    assert dspex.Retrieve(k=1, rm=colbert)(query="capital of France").passages == [CORPUS[0]]
    with dspex.context(rm=colbert):
        assert dspex.Retrieve(k=1)("Tiber river").passages == [CORPUS[3]]
    texts = asyncio.run(colbert.acall("capital of France", simplify=True))
    assert texts == [CORPUS[0], CORPUS[1]]


def test_each_search_is_a_retrieve_span(server: RunningColBERT) -> None:
    seen: list[tuple[str, Any]] = []

    class Spy(dspex.Callback):
        def on_retrieve_start(self, span: Any, retriever: Any, query: str, k: int) -> None:
            seen.append(("start", (query, k)))

        def on_retrieve_end(
            self, span: Any, retriever: Any, passages: Any, error: BaseException | None
        ) -> None:
            seen.append(("end", [p.id for p in passages]))

    with dspex.context(callbacks=[Spy()]):
        dspex.ColBERTv2(url=server.url)("capital of Italy", k=2)
    assert seen == [("start", ("capital of Italy", 2)), ("end", ["2", "3"])]


def test_bad_arguments_fail_before_any_request(server: RunningColBERT) -> None:
    before = server.service.requests
    with pytest.raises(UserError, match="http:// or https://"):
        dspex.ColBERTv2(url="127.0.0.1:8893")
    with pytest.raises(UserError, match="timeout"):
        dspex.ColBERTv2(url=server.url, timeout=0)
    colbert = dspex.ColBERTv2(url=server.url)
    with pytest.raises(UserError, match="empty"):
        colbert("   ")
    with pytest.raises(UserError, match="positive int"):
        colbert("capital", k=0)
    assert server.service.requests == before


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, '{"error": true, "message": "index not loaded"}', "returned an error.*index not"),
        (502, "<html>Bad Gateway</html>", "HTTP 502"),
        (200, "<html>a login page</html>", "not JSON"),
        (200, '{"results": []}', "without a 'topk' list"),
    ],
)
def test_server_errors_and_bad_answers_are_retrieval_errors(
    server: RunningColBERT, status: int, body: str, message: str
) -> None:
    server.service.inject(status, body)
    with pytest.raises(RetrievalError, match=message) as info:
        dspex.ColBERTv2(url=server.url)("capital")
    assert info.value.status == status
    assert info.value.retryable is (status >= 500)


def test_a_server_echoing_the_urls_token_does_not_put_it_in_the_error(
    server: RunningColBERT,
) -> None:
    colbert = dspex.ColBERTv2(url=f"{server.url}?api_key=tok-echoed-4b3a2c1d")
    server.service.inject(401, '{"error": true, "message": "bad api_key tok-echoed-4b3a2c1d"}')
    with pytest.raises(RetrievalError, match=r"HTTP 401.*bad api_key") as info:
        colbert("capital")
    server.service.inject(403, "forbidden: tok-echoed-4b3a2c1d")
    with pytest.raises(RetrievalError, match="HTTP 403") as again:
        colbert("capital")
    assert "tok-echoed-4b3a2c1d" not in str(info.value) + str(again.value)


def test_unreachable_server_says_so_without_credentials() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    colbert = dspex.ColBERTv2(url=f"http://user:s3cret-pw@127.0.0.1:{port}/api/search")
    assert "s3cret" not in repr(colbert)
    with pytest.raises(RetrievalError, match="Could not reach") as info:
        colbert("capital")
    assert info.value.retryable
    assert "s3cret" not in str(info.value)
    # A token in the query string (a hosted endpoint's ?api_key=...) is a secret too.
    tokened = dspex.ColBERTv2(url=f"http://127.0.0.1:{port}/api/search?api_key=tok-9f8e7d6c5b")
    assert "tok-9f8e7d6c5b" not in repr(tokened)
    with pytest.raises(RetrievalError, match="Could not reach") as info:
        tokened("capital")
    assert "tok-9f8e7d6c5b" not in str(info.value)


def test_slow_server_times_out() -> None:
    with (
        serve_colbert(CORPUS, latency=0.5) as slow,
        pytest.raises(RetrievalError, match=r"no answer within 0\.05s") as info,
    ):
        dspex.ColBERTv2(url=slow.url, timeout=0.05)("capital")
    assert info.value.retryable


def test_server_runs_as_a_process_over_a_jsonl_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(CORPUS[0]) + "\n" + json.dumps({"text": CORPUS[1]}) + "\n")
    with subprocess.Popen(
        [sys.executable, "-m", "dspex.testing.colbert", "--corpus", str(corpus)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("listening http://127.0.0.1:")
            url = line.split()[1]
            assert dspex.ColBERTv2(url)("Germany", k=1, simplify=True) == [CORPUS[1]]
        finally:
            proc.terminate()
            assert proc.wait(10) == 0
