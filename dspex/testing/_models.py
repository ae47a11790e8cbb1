"""``DummyLM`` and ``SimulatedLM``: real ``dspex.LM`` clients whose provider is a test double.

Both are ordinary ``LM`` objects (cache, retries, history, usage all run for real); only the
transport differs. ``route="direct"`` answers in-process through :class:`LocalTransport`;
``route="litellm"`` registers the double as a litellm custom provider and goes through
litellm's request path, as a hosted model would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from dspex.datasets._task import SimTask, load_task
from dspex.errors import UserError
from dspex.lm._lm import LM
from dspex.lm._types import LMRequest
from dspex.testing._core import Faults
from dspex.testing._litellm import DUMMY_PROVIDER, SIM_PROVIDER, register_responder
from dspex.testing._script import Answer, Script
from dspex.testing._sim import Simulator
from dspex.testing._transport import LocalTransport

__all__ = ["DummyLM", "SimulatedLM"]

Route = Literal["direct", "litellm"]


def _check_route(route: str) -> None:
    if route not in ("direct", "litellm"):
        raise UserError(f"route must be 'direct' or 'litellm', got {route!r}.")


class DummyLM(LM):
    """An LM that answers from a script and never invents an answer.

    It takes DSPy's ``DummyLM`` arguments: a list of answer dicts, a dict from a prompt
    substring to an answer dict, ``follow_examples`` and ``adapter``.

    Args:
        answers: a list of answers consumed in order, or a mapping from a substring of the
            last user message to an answer. An answer is a dict of output values (formatted in
            the field-marker format, or as JSON when the request asks for JSON) or a raw string
            returned verbatim (to test malformed output).
        follow_examples: answer with the outputs of the last demo in the prompt whose first
            input equals the final one (DSPy's mode 3); ``answers`` answer when none does.
        reasoning: DSPy's option to add reasoning content; only ``False`` is supported.
        adapter: the adapter whose format answers take (``JSONAdapter``: a JSON object,
            another adapter: field sections); ``None`` follows the prompt.
        route: ``"direct"`` (in-process) or ``"litellm"`` (through litellm).
        **lm_kwargs: ``LM`` arguments; ``cache`` defaults to ``False`` so every call consumes
            an answer.

    Raises:
        ScriptExhaustedError: (on a call) when the script has no answer left or no key matches.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> lm = DummyLM([{"answer": "4"}])
        >>> print(lm("What is 2+2?")[0])
        [[ ## answer ## ]]
        4
        <BLANKLINE>
        [[ ## completed ## ]]
        >>> len(lm.requests)
        1
    """

    def __init__(
        self,
        answers: Sequence[Answer] | Mapping[str, Answer],
        follow_examples: bool = False,
        reasoning: bool = False,
        adapter: Any = None,
        *,
        route: Route = "direct",
        **lm_kwargs: Any,
    ) -> None:
        _check_route(route)
        if reasoning:
            raise UserError(
                "DummyLM(reasoning=True) is not supported: script a reasoning output field "
                "instead, e.g. DummyLM([{'reasoning': '...', 'answer': '...'}])."
            )
        self.follow_examples = follow_examples
        self.script = Script(
            answers, follow_examples=follow_examples, json_mode=_json_mode(adapter)
        )
        lm_kwargs.setdefault("cache", False)
        if route == "litellm":
            model = register_responder(DUMMY_PROVIDER, self.script, "script")
            super().__init__(model, transport="litellm", **lm_kwargs)
        else:
            super().__init__(
                f"{DUMMY_PROVIDER}/script", transport=LocalTransport(self.script), **lm_kwargs
            )

    @property
    def requests(self) -> list[LMRequest]:
        """Every request the script received, in order."""
        return self.script.requests

    @property
    def request_count(self) -> int:
        """How many requests reached the script (cache hits do not)."""
        return self.script.request_count

    def get_convo(self, index: int) -> tuple[list[dict[str, Any]], list[str]]:
        """The messages sent and the texts answered in call ``index`` of ``history`` (DSPy's)."""
        entry = self.history[index]
        return [dict(m) for m in entry.messages], list(entry.outputs)


def _json_mode(adapter: Any) -> bool | None:
    """Which format an adapter's answers take: ``None`` (follow the prompt) without one."""
    if adapter is None:
        return None
    from dspex.adapters import JSONAdapter

    return isinstance(adapter, JSONAdapter)


def _model_name(task: SimTask, seed: int) -> str:
    """A name that changes whenever the answers could: a custom task or params get a digest,
    so the LM cache never replays one configuration's answers for another."""
    name = task.name
    try:
        bundled = load_task(name) == task
    except UserError:
        bundled = False
    if not bundled:
        rows = [sorted(ex.items()) for ex in task.examples]
        params = {f: v for f, v in vars(task).items() if f != "examples"}
        digest = hashlib.blake2b(repr((rows, sorted(params.items()))).encode(), digest_size=4)
        name = f"{name}-{digest.hexdigest()}"
    return f"{name}-s{seed}" if seed else name


class SimulatedLM(LM):
    """A deterministic stand-in for a hosted model, whose accuracy responds to the prompt.

    It answers an example of ``task`` correctly with a probability that rises with a hint in
    the instruction, with correct demos, and with a reasoning field before the answer (see
    :class:`~dspex.datasets.SimTask`); otherwise it gives a plausible wrong answer. Fields
    named like ``instruction`` get an instruction from the task's pool, ``summary`` or
    ``description`` a summary. The same prompt always gets the same answer.

    Args:
        task: ``"arithmetic"``, ``"factqa"`` or a :class:`~dspex.datasets.SimTask`.
        latency: seconds each answer takes.
        faults: fault injection rates (:class:`Faults`).
        seed: another seed is another "model" of the same skill.
        route: ``"direct"`` (in-process) or ``"litellm"`` (through litellm's custom provider).
        **lm_kwargs: ``LM`` arguments (``cache``, ``num_retries``, ``timeout``, ``temperature``).

    Example:
        >>> from dspex.testing import SimulatedLM
        >>> lm = SimulatedLM("arithmetic", cache=False)
        >>> lm.model
        'dspex-sim/arithmetic'
        >>> lm.request_count
        0
    """

    def __init__(
        self,
        task: str | SimTask = "arithmetic",
        *,
        latency: float = 0.0,
        faults: Faults | None = None,
        seed: int = 0,
        route: Route = "direct",
        **lm_kwargs: Any,
    ) -> None:
        _check_route(route)
        if latency < 0:
            raise UserError(f"SimulatedLM(latency={latency}) must be >= 0 seconds.")
        sim_task = load_task(task) if isinstance(task, str) else task
        self.simulator = Simulator(sim_task, seed=seed, faults=faults, latency=latency)
        name = _model_name(sim_task, seed)
        if route == "litellm":
            model = register_responder(SIM_PROVIDER, self.simulator, name)
            super().__init__(model, transport="litellm", **lm_kwargs)
        else:
            transport = LocalTransport(self.simulator)
            super().__init__(f"{SIM_PROVIDER}/{name}", transport=transport, **lm_kwargs)

    @property
    def task(self) -> SimTask:
        """The task the simulator answers about."""
        return self.simulator.task

    @property
    def request_count(self) -> int:
        """How many requests reached the simulator (retries counted, cache hits not)."""
        return self.simulator.request_count

    @property
    def token_usage(self) -> tuple[int, int]:
        """``(prompt_tokens, completion_tokens)`` served so far (rough: characters / 4)."""
        c = self.simulator.counters
        return c.prompt_tokens, c.completion_tokens
