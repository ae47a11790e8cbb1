"""LM-layer throughput: calls/s and client CPU per call against a 50 ms loopback server.

The server is a raw asyncio HTTP/1.1 server (TCP_NODELAY, keep-alive, a canned
``chat.completion``) in a separate process, so ``time.process_time()`` here measures the
client alone: ``LM.aforward`` with its request building, cache lookup and write, transport,
response parsing, usage and history.

Usage::

    python benchmarks/lm_layer.py                   # 1000 calls, concurrency 64, cache on
    python benchmarks/lm_layer.py --cache off --calls 2000
    python benchmarks/lm_layer.py --sync-threads 8  # sync lm(...) from 8 threads instead
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from dspex.lm import LM

_BODY = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "[[ ## answer ## ]]\n42\n\n"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132},
    }
).encode()
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\nConnection: keep-alive\r\n\r\n"
    + _BODY
)


class _Http(asyncio.Protocol):
    """Minimal keep-alive HTTP/1.1: answer each complete request after ``latency`` s."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 : head.find(b"\r\n", start)]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            loop.call_later(self.latency, self._reply)

    def _reply(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_RESPONSE)


def _serve(port_out: multiprocessing.connection.Connection, latency: float) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Http(latency), "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _messages(i: int) -> list[dict[str, str]]:
    # Prompt-sized messages (about 1.5 KB), unique per call so every call misses the cache.
    system = "Your input fields are:\n1. `question` (str)\nYour output fields are:\n" * 12
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"[[ ## question ## ]]\nWhat is 6 * 7? (call {i})"},
    ]


async def _run_async(lm: LM, calls: int, concurrency: int, offset: int) -> None:
    counter = iter(range(offset, offset + calls))

    async def worker() -> None:
        for i in counter:
            await lm.aforward(_messages(i))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _run_sync(lm: LM, calls: int, threads: int, offset: int) -> None:
    lock = threading.Lock()
    counter = iter(range(offset, offset + calls))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            lm.forward(_messages(i))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--cache", choices=("on", "off"), default="on")
    parser.add_argument("--sync-threads", type=int, default=0, help="use sync calls instead")
    args = parser.parse_args()

    os.environ.setdefault("DSPEX_CACHE_DIR", tempfile.mkdtemp(prefix="dspex-bench-"))
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(send, args.latency), daemon=True
    )
    server.start()
    port = receive.recv()

    # Imported here so the spawned server process does not import dspex.
    from dspex.lm import LM, default_cache

    lm = LM(
        "openai/bench",
        api_base=f"http://127.0.0.1:{port}/v1",
        cache=args.cache == "on",
        history_size=1000,
    )

    store = default_cache() if args.cache == "on" else None

    async def measure_async() -> tuple[float, float]:
        # Warm up on the same loop: open the pool's connections, load the price map.
        await _run_async(lm, args.concurrency * 2, args.concurrency, offset=10**9)
        wall, cpu = time.perf_counter(), time.process_time()
        await _run_async(lm, args.calls, args.concurrency, offset=0)
        if store is not None:
            store.flush()  # the batched disk writes belong to the measured work
        return time.perf_counter() - wall, time.process_time() - cpu

    def measure_sync() -> tuple[float, float]:
        _run_sync(lm, args.concurrency * 2, args.sync_threads, offset=10**9)
        wall, cpu = time.perf_counter(), time.process_time()
        _run_sync(lm, args.calls, args.sync_threads, offset=0)
        if store is not None:
            store.flush()
        return time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = measure_sync() if args.sync_threads else asyncio.run(measure_async())
    server.terminate()

    mode = f"sync x{args.sync_threads} threads" if args.sync_threads else "async"
    print(
        f"{args.calls} calls, {mode}, concurrency {args.sync_threads or args.concurrency}, "
        f"latency {args.latency * 1000:.0f} ms, cache {args.cache}, python {sys.version.split()[0]}"
    )
    ideal = (args.sync_threads or args.concurrency) / args.latency
    print(f"throughput: {args.calls / wall:.0f} calls/s (ideal {ideal:.0f})")
    print(f"client CPU: {cpu / args.calls * 1000:.3f} ms/call")


if __name__ == "__main__":
    main()
