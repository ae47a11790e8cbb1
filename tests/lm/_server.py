"""A scriptable OpenAI-compatible server on 127.0.0.1 for the LM tests.

The server runs on its own event loop in its own thread, so sync calls (which block the
test's thread while dspex's background loop sends the request) and async calls (made on
pytest's loop) both reach it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dspex._serving import chat_completion


@dataclass
class Reply:
    """One scripted answer: a status, a JSON body, headers; or a hang."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Seen:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The default answer: echo the last message, one choice per ``n``."""
    last = body["messages"][-1]["content"]
    n = int(body.get("n") or 1)
    return chat_completion(
        body["model"],
        [f"echo {i}: {last}" for i in range(n)],
        prompt_tokens=10,
        completion_tokens=5,
        completion_id="cmpl-test",
        created=0,
    )


class ScriptedServer:
    """Answers ``POST /v1/chat/completions`` from a script, then with echo completions.

    ``delay`` holds every answer that long; ``gate``, when set, holds every answer until the
    test sets it. ``in_flight`` and ``peak`` count requests received and not yet answered.
    """

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.delay = 0.0
        self.gate: threading.Event | None = None
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        return len(self.seen)

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.seen.append(Seen(request.path, dict(request.headers), body))
            reply = self.script.pop(0) if self.script else Reply()
        if self.delay:
            await asyncio.sleep(self.delay)
        gate = self.gate
        if gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
        if reply.hang:
            await asyncio.sleep(3600)
        if reply.status == 200 and reply.body is None:
            return web.json_response(completion(body), headers=reply.headers)
        if isinstance(reply.body, bytes | str):
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        return web.json_response(reply.body or {}, status=reply.status, headers=reply.headers)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> ScriptedServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Hanging handlers outlive the runner's shutdown timeout; end them here.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]
