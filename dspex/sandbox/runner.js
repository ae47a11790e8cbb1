// The Deno side of dspex.PythonInterpreter: Pyodide (CPython compiled to WebAssembly) in a
// Deno process started without file-system, network, environment or subprocess permissions.
//
// It speaks JSON lines: the host writes requests on stdin, this script answers on stdout.
// Nothing else may reach stdout, so Python's prints are captured per call and console.* goes
// to stderr. Values cross as JSON *strings* (variables_json, value_json) that only Python
// parses, so integers beyond 2**53 and float spellings survive the trip unchanged.
//
//   host -> sandbox                            sandbox -> host
//   {op: "init", snapshot, make_snapshot,      {type: "snapshot", data: base64}  (once, if asked)
//    memory_limit_bytes, tools, output_fields} {type: "ready", pyodide, load_ms}
//   {op: "execute", id, code, variables_json}  {type: "tool_call", id, name, args_json} ...
//                                              {type: "result", id, ok, ...outcome}
//   {op: "tool_result", id, ok, value_json | error}
//   {op: "shutdown"}
//
// The version below must match PYODIDE_VERSION in _deno.py (a test checks it).
import { loadPyodide } from "npm:pyodide@0.28.3";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const stdin = Deno.stdin;
const stdout = Deno.stdout;

// Anything printed by Pyodide or this script outside a call goes to stderr, never stdout.
for (const name of ["log", "info", "debug", "warn"]) {
  console[name] = (...args) => console.error(...args);
}

// An error the code left to the event loop (a refused connection it never awaited, say)
// would end the process; note it and carry on instead.
for (const event of ["error", "unhandledrejection"]) {
  globalThis.addEventListener(event, (e) => {
    e.preventDefault();
    console.error("dspex sandbox: uncaught", e.reason ?? e.error ?? e.message);
  });
}

function send(message) {
  const bytes = encoder.encode(JSON.stringify(message) + "\n");
  let offset = 0;
  while (offset < bytes.length) {
    offset += stdout.writeSync(bytes.subarray(offset));
  }
}

// Blocking line reader: tool calls must wait for the host's answer inside a synchronous
// Python call, so the whole loop reads stdin synchronously.
let buffered = new Uint8Array(0);
const chunk = new Uint8Array(1 << 16);

function readLine() {
  for (;;) {
    const newline = buffered.indexOf(10);
    if (newline >= 0) {
      const line = decoder.decode(buffered.subarray(0, newline));
      buffered = buffered.slice(newline + 1);
      return line;
    }
    const n = stdin.readSync(chunk);
    if (n === null) return null;
    const grown = new Uint8Array(buffered.length + n);
    grown.set(buffered);
    grown.set(chunk.subarray(0, n), buffered.length);
    buffered = grown;
  }
}

function readMessage() {
  const line = readLine();
  return line === null ? null : JSON.parse(line);
}

// The soft memory cap: Pyodide's allocator grows its WebAssembly memory through this method;
// refusing past the cap makes malloc fail, which Python raises as MemoryError. Code can undo
// this from Python (through the `js` module), which is why the host also watches the
// process's resident memory and kills it past the hard cap.
function capMemory(limitBytes) {
  const grow = WebAssembly.Memory.prototype.grow;
  Object.defineProperty(WebAssembly.Memory.prototype, "grow", {
    value: function (pages) {
      if (this.buffer.byteLength + pages * 65536 > limitBytes) {
        throw new RangeError("dspex sandbox memory limit reached");
      }
      return grow.call(this, pages);
    },
    writable: false,
    configurable: false,
  });
}

let callOutput = null; // {stdout: [], stderr: [], size: 0} while a call runs
const OUTPUT_LIMIT = 1 << 20;

function captureStream(key) {
  const streamDecoder = new TextDecoder();
  return {
    write(bytes) {
      if (callOutput !== null && callOutput.size < OUTPUT_LIMIT) {
        const text = streamDecoder.decode(bytes, { stream: true });
        callOutput[key].push(text);
        callOutput.size += text.length;
      } else if (callOutput === null) {
        console.error(decoder.decode(bytes));
      }
      return bytes.length;
    },
  };
}

let nextToolCall = 0;

// Called from Python (the tool stubs): asks the host to run a tool and waits for its answer.
function callTool(name, argsJson) {
  const id = ++nextToolCall;
  send({ type: "tool_call", id, name, args_json: argsJson });
  for (;;) {
    const message = readMessage();
    if (message === null) throw new Error("the host closed the sandbox's input");
    if (message.op === "tool_result" && message.id === id) {
      return JSON.stringify(message);
    }
    console.error("dspex sandbox: ignored a message during a tool call:", message.op);
  }
}

// Python-side harness: runs code in its own namespace, returns the outcome as a JSON string.
const HARNESS = `
import ast, inspect, json, linecache, traceback

import _dspex_host


class ToolError(Exception):
    """A host tool failed; the message names the tool and the error."""


class _Submit(BaseException):
    def __init__(self, value):
        self.value = value


_output_fields = None


def SUBMIT(*args, **kwargs):
    """End the code with its final output: SUBMIT(answer=...) or SUBMIT(value)."""
    if _output_fields is None:
        if args and kwargs:
            raise TypeError("SUBMIT takes one value or keyword arguments, not both")
        if len(args) > 1:
            raise TypeError("SUBMIT takes one value or keyword arguments")
        raise _Submit(args[0] if args else kwargs)
    if len(args) > len(_output_fields):
        raise TypeError(f"SUBMIT takes at most {len(_output_fields)} values: {_output_fields}")
    values = dict(zip(_output_fields, args))
    for key, value in kwargs.items():
        if key not in _output_fields:
            raise TypeError(f"SUBMIT got an unexpected field {key!r}; fields: {_output_fields}")
        if key in values:
            raise TypeError(f"SUBMIT got two values for {key!r}")
        values[key] = value
    missing = [name for name in _output_fields if name not in values]
    if missing:
        raise TypeError(f"SUBMIT is missing {missing}; fields: {_output_fields}")
    raise _Submit(values)


def _tool(name):
    def call(*args, **kwargs):
        try:
            args_json = json.dumps({"args": args, "kwargs": kwargs})
        except (TypeError, ValueError) as exc:
            raise TypeError(f"arguments to tool {name!r} must be JSON values: {exc}") from None
        reply = json.loads(_dspex_host.call_tool(name, args_json))
        if reply["ok"]:
            return json.loads(reply["value_json"])
        raise ToolError(reply["error"])

    call.__name__ = call.__qualname__ = name
    return call


namespace = {"__name__": "__main__", "__builtins__": __builtins__}
_calls = 0


def configure(tools_json, output_fields_json):
    global _output_fields
    _output_fields = json.loads(output_fields_json)
    namespace["SUBMIT"] = SUBMIT
    namespace["ToolError"] = ToolError
    for name in json.loads(tools_json):
        namespace[name] = _tool(name)


def _error(exc, tb):
    return {
        "ok": False,
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


async def run(code, variables_json):
    """Run code like a module whose last expression is its value; top-level await works."""
    global _calls
    _calls += 1
    filename = f"<sandbox-{_calls}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        namespace.update(json.loads(variables_json))
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        value = await _eval(compile(tree, filename, "exec", flags=_AWAIT))
        if last is not None:
            value = await _eval(compile(last, filename, "eval", flags=_AWAIT))
    except _Submit as submit:
        value, final = submit.value, True
    except SyntaxError as exc:
        return json.dumps(_error(exc, None))
    except BaseException as exc:
        # Drop the harness's own frames: the traceback starts in the submitted code.
        tb = exc.__traceback__
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<sandbox-"):
            tb = tb.tb_next
        return json.dumps(_error(exc, tb))
    else:
        final = False
    try:
        value_json = json.dumps(value)
    except (TypeError, ValueError) as exc:
        kind = "SUBMIT's value" if final else "The code's last expression"
        message = f"{kind} is not a JSON value ({exc}); convert it, e.g. to a list or str"
        return json.dumps({"ok": False, "error_type": "TypeError", "message": message,
                           "traceback": f"TypeError: {message}\\n"})
    return json.dumps({"ok": True, "value_json": value_json, "final": final})


_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


async def _eval(code_object):
    result = eval(code_object, namespace)
    # Code with a top-level await compiles to a coroutine: run it on Pyodide's event loop.
    if code_object.co_flags & inspect.CO_COROUTINE:
        result = await result
    return result
`;

async function start(init) {
  capMemory(init.memory_limit_bytes);
  const started = performance.now();
  const options = { stdout: (text) => console.error(text), stderr: (text) => console.error(text) };
  let pyodide;
  if (init.snapshot) {
    pyodide = await loadPyodide({ ...options, _loadSnapshot: Deno.readFileSync(init.snapshot) });
  } else {
    pyodide = await loadPyodide({ ...options, _makeSnapshot: init.make_snapshot });
    if (init.make_snapshot) {
      // Taken before any submitted code has run, so it holds a pristine interpreter.
      const bytes = pyodide.makeMemorySnapshot();
      let binary = "";
      for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      send({ type: "snapshot", data: btoa(binary) });
    }
  }
  pyodide.setStdout(captureStream("stdout"));
  pyodide.setStderr(captureStream("stderr"));
  pyodide.registerJsModule("_dspex_host", { call_tool: callTool });
  const harness = pyodide.runPython(
    `import types\n_m = types.ModuleType("_dspex_sandbox")\nexec(${JSON.stringify(HARNESS)}, _m.__dict__)\n_m`,
  );
  harness.configure(JSON.stringify(init.tools), JSON.stringify(init.output_fields ?? null));
  send({ type: "ready", pyodide: pyodide.version, load_ms: performance.now() - started });
  return harness;
}

async function execute(harness, request) {
  callOutput = { stdout: [], stderr: [], size: 0 };
  let outcome;
  try {
    outcome = JSON.parse(await harness.run(request.code, request.variables_json));
  } catch (error) {
    // A failure of the bridge itself (e.g. the soft memory cap hit inside Pyodide's runtime).
    outcome = { ok: false, error_type: "SandboxError", message: String(error), traceback: "" };
  }
  outcome.stdout = callOutput.stdout.join("");
  outcome.stderr = callOutput.stderr.join("");
  outcome.truncated = callOutput.size >= OUTPUT_LIMIT;
  callOutput = null;
  send({ type: "result", id: request.id, ...outcome });
}

const init = readMessage();
if (init === null || init.op !== "init") {
  console.error("dspex sandbox: expected an init message first");
  Deno.exit(2);
}
let harness;
try {
  harness = await start(init);
} catch (error) {
  console.error("dspex sandbox: Pyodide did not start:", error);
  Deno.exit(3);
}
try {
  for (;;) {
    const message = readMessage();
    if (message === null || message.op === "shutdown") break;
    if (message.op === "execute") {
      await execute(harness, message); // the event loop runs while the code awaits
    } else {
      console.error("dspex sandbox: unknown message:", message.op);
    }
  }
} catch (error) {
  // Exit rather than hang: the host sees the process end and starts a fresh one.
  console.error("dspex sandbox: stopped:", error);
  Deno.exit(4);
}
Deno.exit(0);
