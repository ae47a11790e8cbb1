"""A byte-level HTTP/1.1 server on 127.0.0.1 for the HTTP client tests.

Each request gets the next scripted ``Raw`` reply, written exactly as given (piece by piece,
optionally paused between pieces): chunked bodies, split heads, dropped connections and
hangs are what the client must survive, so the test writes the bytes itself. It runs on its
own loop in its own thread (asyncio sets TCP_NODELAY on its sockets), and counts the
connections it accepted and saw closed.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from dspex._jsonable import dumps
from dspex._serving import chat_completion, chat_completion_chunks, sse_event


@dataclass
class Raw:
    """One scripted reply: ``pieces`` written in order, ``pause`` seconds apart; then the
    connection is closed (``close``), or left open with nothing more sent until the client
    goes (``hang``). No pieces and ``close``: the request is dropped unanswered."""

    pieces: list[bytes] = field(default_factory=list)
    pause: float = 0.0
    close: bool = False
    hang: bool = False


def completion_body(text: str = "hello") -> bytes:
    return dumps(chat_completion("m", [text], prompt_tokens=3, completion_tokens=1))


def json_reply(
    body: bytes, status: int = 200, headers: bytes = b"", *, chunked: bool = False
) -> bytes:
    """The bytes of a whole answer, framed by Content-Length or as chunks of 7 bytes."""
    head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n" % status + headers
    if not chunked:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    chunks = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7])
        for i in range(0, len(body), 7)
    )
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: 1\r\n\r\n"


def gzip_reply(body: bytes) -> bytes:
    return json_reply(gzip.compress(body), headers=b"Content-Encoding: gzip\r\n")


def sse_pieces(words: list[str]) -> list[bytes]:
    """A streamed answer as separate HTTP chunks: the head, one event per chunk, the end."""
    events = [sse_event(c) for c in chat_completion_chunks("m", words, include_usage=True)]
    events.append(sse_event("[DONE]"))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    return [head, *(b"%x\r\n%s\r\n" % (len(e), e) for e in events), b"0\r\n\r\n"]


class RawServer:
    """Answers every request on 127.0.0.1 with the next ``Raw`` reply (a plain completion
    when the script is empty)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script: list[Raw] = []
        self.requests: list[bytes] = []
        self.accepted = 0
        self.closed = 0
        self.port = 0
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Raw) -> None:
        self.script.extend(replies)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed += 1
            self._tasks.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open for another."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        self.requests.append(head + await reader.readexactly(length))
        reply = self.script.pop(0) if self.script else Raw([json_reply(completion_body())])
        for i, piece in enumerate(reply.pieces):
            if i and reply.pause:
                await asyncio.sleep(reply.pause)
            writer.write(piece)
            await writer.drain()
        if reply.hang:
            await reader.read()  # until the client closes its end
            return False
        return not reply.close

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> RawServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def wait_closed(self, n: int, timeout: float = 5.0) -> bool:
        """Whether ``n`` connections have closed within ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        while self.closed < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.closed >= n
