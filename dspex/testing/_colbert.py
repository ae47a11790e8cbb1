"""A loopback server that speaks the ColBERTv2 search protocol, over a corpus it is given.

It answers what a ColBERT server (``colbert/server.py``, as hosted for DSPy's examples)
answers, on every path (``/``, ``/api/search``, ``/wiki17_abstracts``...)::

    GET  /api/search?query=...&k=3           POST /api/search  {"query": "...", "k": 3}
    -> {"query": "...", "topk": [{"text": ..., "pid": 0, "rank": 1, "score": 7.1,
                                  "prob": 0.6}, ...]}

Scores are Okapi BM25 over lower-cased word tokens (a lexical stand-in for ColBERT's late
interaction: what the tests need is a deterministic ranking a reader can check), ``prob`` the
softmax of the top-k scores, as the ColBERT server computes it. A request without a query is
a 400 ``{"error": true, "message": ...}``. :meth:`ColBERTServer.inject` queues canned raw
replies (a 500, a body that is not JSON) for error-path tests, and ``latency`` delays each
answer (timeouts).

Run it in a thread with :func:`serve_colbert`, or as a process with
``python -m dspex.testing.colbert --corpus passages.jsonl`` (one JSON string or
``{"text": ...}`` object per line). It binds 127.0.0.1 only.

Example:
    >>> from dspex.testing import serve_colbert
    >>> with serve_colbert(["Paris is in France.", "Rome is in Italy."]) as server:
    ...     print(server.url)  # doctest: +SKIP
    http://127.0.0.1:PORT/api/search
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dspex._serving import set_nodelay
from dspex.errors import DataError, UserError

__all__ = [
    "ColBERTServer",
    "LexicalIndex",
    "RunningColBERT",
    "load_corpus",
    "make_server",
    "serve_colbert",
]

_TOKEN = re.compile(r"\w+")
# The ColBERT server caps k at 100: it searches the top 100 and cuts.
MAX_K = 100


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class LexicalIndex:
    """Okapi BM25 (k1=1.2, b=0.75) over a small in-memory corpus; ties go to the lower pid.

    Example:
        >>> index = LexicalIndex(["a cat", "a dog", "cats and dogs"])
        >>> [pid for pid, _ in index.search("dog", 2)]
        [1]
    """

    def __init__(self, passages: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.passages = list(passages)
        self._docs = [Counter(_tokens(p)) for p in self.passages]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg = (sum(self._lengths) / len(self._docs)) if self._docs else 0.0
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(doc.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self._k1, self._b = k1, b

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """``(pid, score)`` of the best ``k`` passages sharing a term with ``query``."""
        terms = [t for t in set(_tokens(query)) if t in self._idf]
        scored = []
        for pid, doc in enumerate(self._docs):
            norm = self._k1 * (1 - self._b + self._b * self._lengths[pid] / (self._avg or 1.0))
            score = sum(
                self._idf[t] * doc[t] * (self._k1 + 1) / (doc[t] + norm) for t in terms if t in doc
            )
            if score > 0:
                scored.append((pid, score))
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored[:k]


def load_corpus(path: str | Path) -> list[str]:
    """Passages from a JSON-lines file: each line a JSON string or an object with ``text``
    (or ``long_text``)."""
    passages = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path}:{number} is not JSON ({e}).") from None
        text = row if isinstance(row, str) else None
        if isinstance(row, dict):
            text = row.get("text", row.get("long_text"))
        if not isinstance(text, str):
            raise DataError(
                f'{path}:{number}: expected a JSON string or {{"text": "..."}}, got {line[:80]!r}.'
            )
        passages.append(text)
    return passages


@dataclass
class ColBERTServer:
    """The search service behind the HTTP front: a corpus, its index and a request count.

    Args:
        passages: the corpus; a passage's ``pid`` is its position.
        latency: seconds to wait before each answer.
    """

    passages: Sequence[str]
    latency: float = 0.0
    requests: int = 0
    _index: LexicalIndex = field(init=False, repr=False)
    _canned: deque[tuple[int, bytes]] = field(init=False, repr=False, default_factory=deque)
    # Open keep-alive connections, closed when the server stops (their threads then end).
    _connections: set[socket.socket] = field(init=False, repr=False, default_factory=set)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._index = LexicalIndex(self.passages)

    def close_connections(self) -> None:
        """Close every open client connection (a stopped server leaves none behind)."""
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def inject(self, status: int, body: bytes | str, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``status`` and the raw ``body`` instead."""
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._canned.extend([(status, raw)] * count)

    def search(self, query: str, k: int) -> dict[str, Any]:
        """The ColBERT server's answer body for ``query``: the top ``min(k, 100)``."""
        hits = self._index.search(query, min(k, MAX_K))
        exps = [math.exp(score - hits[0][1]) for _, score in hits] if hits else []
        total = sum(exps)
        topk = [
            {
                "text": self.passages[pid],
                "pid": pid,
                "rank": rank,
                "score": score,
                "prob": e / total,
            }
            for rank, ((pid, score), e) in enumerate(zip(hits, exps, strict=True), 1)
        ]
        return {"query": query, "topk": topk}

    def answer(self, query: Any, k: Any) -> tuple[int, bytes]:
        """``(status, body)`` for one request's parameters (strings from a GET)."""
        with self._lock:
            self.requests += 1
            canned = self._canned.popleft() if self._canned else None
        if self.latency:
            time.sleep(self.latency)
        if canned is not None:
            return canned
        if not isinstance(query, str) or not query:
            return 400, _error_body("Please supply a query")
        try:
            top = int(k if k is not None else 10)
        except (TypeError, ValueError):
            return 400, _error_body(f"k must be an integer, got {k!r}")
        if top < 1:
            return 400, _error_body(f"k must be positive, got {top}")
        return 200, json.dumps(self.search(query, top)).encode()


def _error_body(message: str) -> bytes:
    return json.dumps({"error": True, "message": message}).encode()


def _handler(service: ColBERTServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            set_nodelay(self.connection)
            with service._lock:
                service._connections.add(self.connection)

        def finish(self) -> None:
            with service._lock:
                service._connections.discard(self.connection)
            super().finish()

        def do_GET(self) -> None:
            params = parse_qs(urlsplit(self.path).query)
            query, k = params.get("query", [None])[0], params.get("k", [None])[0]
            self._send(*service.answer(query, k))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, _error_body("the request body is not JSON"))
                return
            if not isinstance(payload, dict):
                self._send(400, _error_body('send {"query": "...", "k": N}'))
                return
            self._send(*service.answer(payload.get("query"), payload.get("k")))

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read what they need from the client

    return Handler


@dataclass
class RunningColBERT:
    """A server started by :func:`serve_colbert`.

    Attributes:
        url: ``http://127.0.0.1:PORT/api/search``, what ``dspex.ColBERTv2(url)`` takes.
        root: ``http://127.0.0.1`` and ``port``: DSPy's ``ColBERTv2(url=root, port=port)``.
        service: the :class:`ColBERTServer` (``requests``, ``inject``).
    """

    url: str
    root: str
    port: int
    service: ColBERTServer


def make_server(service: ColBERTServer, port: int = 0) -> ThreadingHTTPServer:
    """The HTTP server for ``service`` on 127.0.0.1 (not started)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(service))
    server.daemon_threads = True
    return server


@contextlib.contextmanager
def serve_colbert(
    passages: Sequence[str], *, port: int = 0, latency: float = 0.0
) -> Iterator[RunningColBERT]:
    """Serve ``passages`` over the ColBERTv2 protocol in a background thread until the block
    ends.

    Args:
        passages: the corpus (``pid`` = position).
        port: 0 picks a free one.
        latency: seconds before each answer.
    """
    if isinstance(passages, str) or not all(isinstance(p, str) for p in passages):
        raise UserError("serve_colbert takes a list of passage strings.")
    service = ColBERTServer(list(passages), latency=latency)
    server = make_server(service, port)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="colbert-loopback", daemon=True
    )
    thread.start()
    bound = int(server.server_address[1])
    try:
        yield RunningColBERT(
            url=f"http://127.0.0.1:{bound}/api/search",
            root="http://127.0.0.1",
            port=bound,
            service=service,
        )
    finally:
        server.shutdown()
        server.server_close()
        service.close_connections()
        thread.join(5.0)
