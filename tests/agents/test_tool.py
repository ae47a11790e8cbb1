"""``dspex.Tool``: schemas from the function, validation before the call, timeouts, spans."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, ClassVar, Literal

import pydantic
import pytest

import dspex


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


def test_name_description_and_schema_come_from_the_function() -> None:
    def lookup(city: str, field: Literal["country", "population"] = "country") -> str:
        """Look up a fact about a city."""
        return city

    tool = dspex.Tool(lookup)
    assert tool.name == "lookup"
    assert tool.desc == "Look up a fact about a city."
    assert tool.args == {
        "city": {"type": "string"},
        "field": {"enum": ["country", "population"], "type": "string", "default": "country"},
    }
    assert str(tool) == (
        "lookup, whose description is <desc>Look up a fact about a city.</desc>. It takes "
        "arguments {'city': {'type': 'string'}, 'field': {'enum': ['country', 'population'], "
        "'type': 'string', 'default': 'country'}}."
    )


def test_a_pydantic_argument_is_inlined_and_descriptions_can_be_added() -> None:
    def move(p: Point, steps: int) -> Point:
        return p

    tool = dspex.Tool(move, name="mv", desc="Move a point.", arg_desc={"steps": "how far"})
    assert tool.name == "mv" and tool.desc == "Move a point."
    assert "$defs" not in str(tool.args) and tool.args["p"]["required"] == ["x"]
    assert tool.args["steps"] == {"type": "integer", "description": "how far"}


def test_callable_objects_and_async_functions() -> None:
    class Counter:
        """Count things."""

        def __call__(self, n: int) -> int:
            return n + 1

    async def fetch(url: str) -> str:
        return url

    assert dspex.Tool(Counter()).name == "Counter"
    assert dspex.Tool(Counter())(n=1) == 2
    assert dspex.Tool(fetch).args == {"url": {"type": "string"}}
    assert dspex.Tool(fetch)(url="u") == "u"  # runs to completion on dspex's loop
    assert asyncio.run(dspex.Tool(fetch).acall(url="v")) == "v"


def test_arguments_are_validated_before_the_function_runs() -> None:
    calls: list[dict[str, Any]] = []

    def add(a: int, b: int = 1) -> int:
        calls.append({"a": a, "b": b})
        return a + b

    tool = dspex.Tool(add)
    assert tool(a="2", b=3) == 5  # lax: "2" is a valid int, passed as 2
    assert calls == [{"a": 2, "b": 3}]
    for bad in ({"a": "two"}, {"b": 1}, {"a": 1, "c": 2}):
        with pytest.raises(dspex.DataError, match="got invalid arguments"):
            tool(**bad)
    assert len(calls) == 1


def test_a_function_with_kwargs_takes_extra_arguments() -> None:
    def anything(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    assert dspex.Tool(anything)(x=1, y="2") == {"x": 1, "y": "2"}


def test_a_sync_tool_past_its_timeout_raises_and_the_caller_goes_on() -> None:
    release = threading.Event()

    def hang() -> str:
        release.wait(10)
        return "late"

    tool = dspex.Tool(hang, timeout=0.2)
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2 s"):
        tool()
    assert time.perf_counter() - start < 2
    release.set()


async def test_an_async_tool_past_its_timeout_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def hang() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    with pytest.raises(TimeoutError):
        await dspex.Tool(hang, timeout=0.1).acall()
    assert cancelled.is_set()


def test_every_call_is_a_tool_span() -> None:
    events: list[tuple[Any, ...]] = []

    class Spy(dspex.Callback):
        def on_tool_start(self, span: Any, name: str, args: Any) -> None:
            events.append(("start", span.kind, name, dict(args)))

        def on_tool_end(self, span: Any, name: str, result: Any, error: Any) -> None:
            events.append(("end", span.kind, name, result, type(error).__name__))

    def double(x: int) -> int:
        return 2 * x

    tool = dspex.Tool(double)
    with dspex.context(callbacks=[Spy()]):
        tool(x=2)
        with pytest.raises(dspex.DataError):
            tool(x="nope")
    assert events == [
        ("start", "tool", "double", {"x": 2}),
        ("end", "tool", "double", 4, "NoneType"),
        ("start", "tool", "double", {"x": "nope"}),
        ("end", "tool", "double", None, "DataError"),
    ]


def test_a_tool_call_is_a_trace_row_with_redacted_arguments() -> None:
    def fetch(url: str, api_key: str = "") -> str:
        return f"page at {url}"

    tool = dspex.Tool(fetch)
    with dspex.traces.record(run_id="tools"):
        tool(url="https://example.test", api_key="sk-live-0123456789abcdef")
        with pytest.raises(dspex.DataError):
            tool(url=1.5j)
    rows = dspex.traces.sql(
        "SELECT kind, module_path, inputs, outputs, status, error_type FROM traces "
        "WHERE run_id = 'tools' ORDER BY started_at"
    ).to_pylist()
    assert [(r["kind"], r["module_path"], r["status"]) for r in rows] == [
        ("tool", "fetch", "ok"),
        ("tool", "fetch", "error"),
    ]
    assert "sk-live" not in rows[0]["inputs"] and "example.test" in rows[0]["inputs"]
    assert rows[0]["outputs"] == "page at https://example.test"
    assert rows[1]["error_type"] == "DataError"


def test_tool_calls_execute_through_tools() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    calls = dspex.ToolCalls.from_dict_list([{"name": "add", "args": {"a": "1", "b": 2}}])
    assert calls.tool_calls[0].execute([dspex.Tool(add)]) == 3
    assert calls.tool_calls[0].execute({"add": add}) == 3
    assert calls.tool_calls[0].execute() == 3  # found in the caller's locals, as in DSPy
    with pytest.raises(ValueError, match="not found"):
        calls.tool_calls[0].execute({})


def test_from_mcp_tool_and_from_langchain() -> None:
    class Text:
        type = "text"

        def __init__(self, text: str) -> None:
            self.text = text

    class Result:
        def __init__(self, text: str, error: bool = False) -> None:
            self.content = [Text(text)]
            self.isError = error

    class Session:
        async def call_tool(self, name: str, arguments: dict[str, Any]) -> Result:
            return Result(f"{name}:{arguments['q']}", error=arguments["q"] == "bad")

    class McpTool:
        name = "search"
        description = "Search."
        inputSchema: ClassVar[dict[str, Any]] = {
            "type": "object",
            "properties": {"q": {"type": "string", "description": "the query"}},
            "required": ["q"],
        }

    tool = dspex.Tool.from_mcp_tool(Session(), McpTool())
    assert tool.args == {"q": {"type": "string", "description": "the query"}}
    assert tool(q="cats") == "search:cats"
    with pytest.raises(RuntimeError, match="Failed to call a MCP tool"):
        tool(q="bad")

    class Structured(Result):
        structuredContent: ClassVar[dict[str, int]] = {"hits": 3}

    class StructuredSession:
        async def call_tool(self, name: str, arguments: dict[str, Any]) -> Result:
            return Structured("3 hits")

    assert dspex.Tool.from_mcp_tool(StructuredSession(), McpTool())(q="x") == "3 hits"
    structured = dspex.Tool.from_mcp_tool(StructuredSession(), McpTool(), result_mode="structured")
    assert structured(q="x") == {"hits": 3}

    class Args(pydantic.BaseModel):
        x: int

    class LangchainTool:
        name = "inc"
        description = "Increment."
        args_schema = Args

        async def ainvoke(self, kwargs: dict[str, Any]) -> int:
            return int(kwargs["x"]) + 1

    lc = dspex.Tool.from_langchain(LangchainTool())
    assert (lc.name, lc.desc, lc(x="4")) == ("inc", "Increment.", 5)


def test_json_adapter_asks_for_json_mode_for_tool_calls() -> None:
    class StructuredLM:
        supports_response_schema = True

    sig = dspex.Signature(
        {"q": (str, dspex.InputField()), "calls": (dspex.ToolCalls, dspex.OutputField())}
    )
    assert dspex.JSONAdapter().lm_kwargs(sig, StructuredLM()) == {
        "response_format": {"type": "json_object"}
    }
