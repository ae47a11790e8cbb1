"""An OpenAI-compatible loopback server for a local (optionally finetuned) model.

    python -m dspex.finetune.serve --model ./tiny --adapter runs/ft/adapter --port 8000

``POST /v1/chat/completions`` (messages, ``temperature``, ``max_tokens``, ``n``) answers with
the model through ``dspex.LM("local/<model>", adapter=...)`` — concurrent requests are
batched — so any OpenAI client can use a finetuned model: ``dspex.LM("openai/<name>",
api_base="http://127.0.0.1:8000/v1")``, the ``openai`` package, curl. ``GET /v1/models`` lists
it. It listens on 127.0.0.1 unless ``--host`` says otherwise, prints its URL on the first line
of stdout, and stops on SIGTERM/SIGINT.

With ``stream: true`` the answer comes as OpenAI's server-sent ``chat.completion.chunk``
events (role, content pieces, finish reason, the usage when ``stream_options.include_usage``,
``data: [DONE]``). The model generates the whole answer first (generation is batched across
requests), then it is sent word by word.
"""

from __future__ import annotations

import argparse
from http.server import ThreadingHTTPServer
from typing import Any

from dspex._serving import (
    EventStream,
    chat_completion,
    chat_completion_chunks,
    error_body,
    make_json_server,
    model_list,
    serve_until_interrupted,
    server_url,
    split_text,
    wants_usage,
)

__all__ = ["main", "make_server"]

_PARAMS = ("temperature", "max_tokens", "n")


def make_server(
    model: str, adapter: str | None = None, host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """The server (not started): ``server.serve_forever()`` runs it."""
    from dspex.lm import LM

    extra: dict[str, Any] = {"adapter": adapter} if adapter else {}
    lm = LM(f"local/{model}", cache=False, **extra)
    name = model.rstrip("/").rsplit("/", 1)[-1]

    def chat(body: Any) -> tuple[int, dict[str, Any] | EventStream]:
        try:
            messages = body["messages"]
            params = {k: body[k] for k in _PARAMS if body.get(k) is not None}
        except (KeyError, TypeError, AttributeError) as e:
            return 400, error_body(f"bad request: {e!r}", "invalid_request_error")
        response = lm.forward(messages, **params)  # a failure here is a 500
        usage = response.usage
        if body.get("stream") is True:
            reasons = list(response.finish_reasons)
            chunks = chat_completion_chunks(
                name,
                split_text(response.outputs[0] if response.outputs else ""),
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                finish_reason=reasons[0] if reasons else "stop",
                include_usage=wants_usage(body),
                more_choices=[
                    (text, reasons[i] if i < len(reasons) else None)
                    for i, text in enumerate(response.outputs[1:], start=1)
                ],
            )
            return 200, EventStream(chunks)
        return 200, chat_completion(
            name,
            response.outputs,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            finish_reasons=response.finish_reasons,
        )

    return make_json_server(
        {
            ("GET", "/v1/models"): lambda _: (200, model_list(name)),
            ("POST", "/v1/chat/completions"): chat,
        },
        host=host,
        port=port,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model directory or hub id")
    p.add_argument("--adapter", default=None, help="a LoRA adapter directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: pick a free port")
    args = p.parse_args(argv)
    server = make_server(args.model, args.adapter, args.host, args.port)
    print(f"{server_url(server)}/v1", flush=True)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
