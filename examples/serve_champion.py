"""A small service that answers with the registry's champion and follows promotions.

    MLFLOW_TRACKING_URI=sqlite:///dspex-runs/mlflow.db \\
        python examples/serve_champion.py --model arithmetic-qa --port 8080

* ``POST /predict`` with a JSON object of the program's inputs (``{"question": "..."}``)
  answers with its outputs and the version that answered: ``{"answer": 5, "version": "3"}``.
* ``POST /stream`` with the same JSON object answers with server-sent events as the program
  writes: ``{"field": "answer", "chunk": "...", "is_last_chunk": false}`` per piece of each
  output field (``dspex.streamify``), ``{"status": "..."}`` for tool calls, then
  ``{"prediction": {...}, "version": "3"}`` and ``data: [DONE]``.
* ``POST /v1/chat/completions`` (OpenAI's API; the last user message is the program's one
  input, or a JSON object of its inputs) answers with the program's last output field, as a
  ``chat.completion`` or, with ``stream: true``, streamed as OpenAI streams; ``GET /v1/models``
  lists the model. Any OpenAI client can talk to the champion.
* ``GET /healthz``: the model, alias and version being served.
* ``POST /reload``: look the alias up again and load the new version if it moved; it also
  happens on its own every ``--poll-s`` seconds (0: only on request). A version that fails
  to load is not swapped in: the current one keeps serving, and the error is reported.

It loads ``models:/NAME@ALIAS`` with ``dspex.mlflow.load_model`` (JSON state and a code
reference, no pickle) and runs the program in-process; the LM's key comes from the
environment. An error answers ``{"error": {"message": ..., "type": ...}}`` with a 4xx/5xx
status. Standard library only, besides dspex (whose loopback servers share the HTTP plumbing
used here): put it behind your own server in production.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import dspex
import dspex.mlflow
from dspex._redact import redact_text
from dspex._serving import (
    EventStream,
    chat_completion,
    chat_completion_chunks,
    error_body,
    make_json_server,
    model_list,
    serve_until_interrupted,
    server_url,
    wants_usage,
)
from dspex.streaming import StatusMessage, StreamListener, StreamResponse


class Champion:
    """The program ``models:/NAME@ALIAS`` points at, swapped atomically on reload."""

    def __init__(self, name: str, alias: str) -> None:
        self.name, self.alias = name, alias
        self._lock = threading.Lock()
        self.version: str | None = None
        self.program: dspex.Module | None = None
        self.reload()

    def reload(self) -> dict[str, Any]:
        """Load the alias's version if it is not the one served; returns what happened."""
        found = dspex.mlflow.get_version_by_alias(self.name, self.alias)
        if found is None:
            raise SystemExit(f"models:/{self.name}@{self.alias} does not exist (yet).")
        version = str(found.version)
        if version == self.version:
            return {"version": version, "reloaded": False}
        program = dspex.mlflow.load_model(f"models:/{self.name}/{version}")
        with self._lock:
            self.program, self.version = program, version
        return {"version": version, "reloaded": True}

    def current(self) -> tuple[dspex.Module, str | None]:
        with self._lock:
            program, version = self.program, self.version
        if program is None:
            raise RuntimeError("no program is loaded")
        return program, version

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        program, version = self.current()
        prediction = program(**inputs)
        return {**dict(prediction.items()), "version": version}

    def stream(self, inputs: dict[str, Any]) -> Iterator[Any]:
        """The program's stream: a StreamResponse per piece of every output field of every
        predictor, status messages, then the Prediction (and the version that answered)."""
        program, version = self.current()
        listeners = [
            StreamListener(field, predict=predictor, predict_name=name)
            for name, predictor in program.named_predictors()
            for field in predictor.signature.output_fields
        ]
        # The program runs on dspex's loop (is_async_program): leaving early cancels it.
        stream = dspex.streamify(
            program, stream_listeners=listeners, is_async_program=True, async_streaming=False
        )
        yield version
        yield from stream(**inputs)

    def answer_field(self) -> str:
        """The field a chat completion answers with: the last predictor's last output."""
        program, _ = self.current()
        predictors = program.predictors()
        return str(list(predictors[-1].signature.output_fields)[-1])


def _events(values: Iterator[Any]) -> Iterator[dict[str, Any]]:
    version = next(values)
    for value in values:
        if isinstance(value, StreamResponse):
            yield {
                "predictor": value.predict_name,
                "field": value.signature_field_name,
                "chunk": value.chunk,
                "is_last_chunk": value.is_last_chunk,
            }
        elif isinstance(value, StatusMessage):
            yield {"status": value.message}
        elif isinstance(value, dspex.Prediction):
            outputs = json.loads(json.dumps(dict(value.items()), default=str))
            yield {"prediction": outputs, "version": version}


def _chat_inputs(champion: Champion, body: Any) -> dict[str, Any]:
    """The program's inputs from an OpenAI chat request's last user message."""
    messages = body.get("messages") if isinstance(body, dict) else None
    users = [m for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), str):
        raise ValueError("send messages with a user message whose content is text")
    content = users[-1]["content"]
    program, _ = champion.current()
    names = [n for p in program.predictors()[:1] for n in p.signature.input_fields]
    if len(names) == 1:
        return {names[0]: content}
    inputs = json.loads(content)
    if not isinstance(inputs, dict):
        raise ValueError(f"the user message must be a JSON object with {names}")
    return inputs


def _chat(champion: Champion, body: Any) -> tuple[int, dict[str, Any] | EventStream]:
    try:
        inputs = _chat_inputs(champion, body)
    except ValueError as e:
        return 400, error_body(str(e), "invalid_request_error")
    model, field = f"{champion.name}@{champion.alias}", champion.answer_field()
    if body.get("stream") is not True:
        answer = champion.predict(inputs)
        text = str(answer.get(field, ""))
        return 200, chat_completion(model, [text], prompt_tokens=0, completion_tokens=0)
    values = champion.stream(inputs)
    next(values)  # the version

    def pieces() -> Iterator[str]:
        for value in values:
            if isinstance(value, StreamResponse) and value.signature_field_name == field:
                yield value.chunk

    chunks = chat_completion_chunks(model, pieces(), include_usage=wants_usage(body))
    return 200, EventStream(chunks)


def make_server(champion: Champion, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The service's HTTP server (not started): JSON in, JSON out, errors reported."""

    def predict(inputs: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(inputs, dict):
            return 400, error_body("send a JSON object of the inputs", "invalid_request_error")
        return 200, champion.predict(inputs)

    def stream(inputs: Any) -> tuple[int, dict[str, Any] | EventStream]:
        if not isinstance(inputs, dict):
            return 400, error_body("send a JSON object of the inputs", "invalid_request_error")
        return 200, EventStream(_events(champion.stream(inputs)))

    def healthz(_: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"model": champion.name, "alias": champion.alias, "version": champion.version}

    model = f"{champion.name}@{champion.alias}"
    return make_json_server(
        {
            ("GET", "/healthz"): healthz,
            ("POST", "/predict"): predict,
            ("POST", "/stream"): stream,
            ("POST", "/reload"): lambda _: (200, champion.reload()),
            ("POST", "/v1/chat/completions"): lambda body: _chat(champion, body),
            ("GET", "/v1/models"): lambda _: (200, model_list(model)),
        },
        host=host,
        port=port,
    )


def _poll(champion: Champion, every: float) -> None:
    while True:
        time.sleep(every)
        try:
            champion.reload()
        except Exception as e:  # the registry is down, a bad version: keep the current one
            # As the HTTP errors (error_body): a tracking URI's user:pass never reaches a log.
            reason = redact_text(str(e))
            print(f"reload failed, still serving v{champion.version}: {reason}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--alias", default="champion")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: pick a free port")
    p.add_argument("--poll-s", type=float, default=60.0, help="alias check period; 0: off")
    args = p.parse_args(argv)
    champion = Champion(args.model, args.alias)
    server = make_server(champion, args.host, args.port)
    if args.poll_s > 0:
        threading.Thread(target=_poll, args=(champion, args.poll_s), daemon=True).start()
    url = server_url(server)
    print(f"serving models:/{args.model}@{args.alias} v{champion.version} on {url}", flush=True)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
