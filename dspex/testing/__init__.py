"""Test doubles for LMs: scripted, simulated, in-process, through litellm or over HTTP.

* :class:`DummyLM` answers from a script and raises ``ScriptExhaustedError`` when it runs out
  (it never invents an answer).
* :class:`SimulatedLM` is a deterministic stand-in for a hosted model whose accuracy rises with
  hint instructions, correct demos and reasoning, like a real model's does; with latency and
  fault injection (:class:`Faults`).
* :func:`serve` / :func:`start_server_process` put either behind a loopback OpenAI-compatible
  HTTP server; :func:`register_litellm_providers` makes ``dspex-sim/...`` and
  ``dspex-dummy/...`` litellm models.
* :func:`serve_colbert` serves a corpus over the ColBERTv2 search protocol on loopback, for
  ``dspex.ColBERTv2`` (also ``python -m dspex.testing.colbert --corpus passages.jsonl``).

Nothing here imports litellm, pyarrow or any server framework until it is used.

Example:
    >>> from dspex.testing import DummyLM, SimulatedLM
    >>> lm = DummyLM([{"answer": "4"}])
    >>> sim = SimulatedLM("arithmetic", latency=0.0, cache=False)
"""

from dspex.testing._colbert import ColBERTServer, RunningColBERT, serve_colbert
from dspex.testing._core import Faults, Reply, Responder
from dspex.testing._embedding import hash_embed
from dspex.testing._litellm import register_litellm_providers
from dspex.testing._models import DummyLM, SimulatedLM
from dspex.testing._prompt import ParsedPrompt, format_answer, parse_prompt
from dspex.testing._script import Script, ScriptedReply
from dspex.testing._serving import (
    RunningServer,
    ServerProcess,
    fetch_stats,
    serve,
    start_server_process,
)
from dspex.testing._sim import Simulator
from dspex.testing._tiny import build_tiny_causal_lm
from dspex.testing._transport import LocalTransport

__all__ = [
    "ColBERTServer",
    "DummyLM",
    "Faults",
    "LocalTransport",
    "ParsedPrompt",
    "Reply",
    "Responder",
    "RunningColBERT",
    "RunningServer",
    "Script",
    "ScriptedReply",
    "ServerProcess",
    "SimulatedLM",
    "Simulator",
    "build_tiny_causal_lm",
    "fetch_stats",
    "format_answer",
    "hash_embed",
    "parse_prompt",
    "register_litellm_providers",
    "serve",
    "serve_colbert",
    "start_server_process",
]
