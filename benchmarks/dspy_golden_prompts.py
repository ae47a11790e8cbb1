"""Write the golden prompt files: DSPy's own messages for the cases dspex must match.

Run with the benchmark virtualenv, where DSPy is installed (never a dspex dependency)::

    .venv-bench/bin/python benchmarks/dspy_golden_prompts.py            # (re)write the files
    .venv-bench/bin/python benchmarks/dspy_golden_prompts.py --check    # exit 1 if stale

The cases live in ``tests/adapters/golden/cases.py`` (plain data, no framework import), which
this script and ``tests/adapters/test_golden_prompts.py`` both read. For each case it builds the
signature, demos and inputs with DSPy, formats them with ``dspy.ChatAdapter().format(...)`` and
``dspy.JSONAdapter().format(...)`` (no LM call) and writes ``golden/<case>.json``; it parses
every completion of ``PARSE_CASES`` with DSPy's adapters and writes ``golden/parse.json``.
No dspex import: the files are DSPy's alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "adapters" / "golden"


def _load_cases() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("golden_cases", GOLDEN / "cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


cases = _load_cases()


def _value(value: Any) -> Any:
    import dspy

    if isinstance(value, cases.HistoryValue):
        return dspy.History(messages=[dict(m) for m in value.messages])
    if isinstance(value, cases.ImageValue):
        if value.file is not None:
            return dspy.Image.from_path(str(GOLDEN / value.file))
        return dspy.Image(value.url)
    if isinstance(value, cases.CodeValue):
        code = dspy.Code if value.language is None else dspy.Code[value.language]
        return code(code=value.code)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def _type(name: Any) -> Any:
    """A field type the case table names (``"Image"``, ``"Code[java]"``...) as DSPy's."""
    import dspy

    if not isinstance(name, str):
        return name
    if name.startswith("Code[") and name.endswith("]"):
        return dspy.Code[name[5:-1]]
    named = {"History": dspy.History, "Image": dspy.Image, "Code": dspy.Code}
    return list[dspy.Image] if name == "list[Image]" else named[name]


def build_signature(case: Any) -> Any:
    import dspy

    if case.spec is not None:
        sig = dspy.Signature(case.spec, case.instructions)
    else:
        annotations: dict[str, Any] = {}
        body: dict[str, Any] = {"__annotations__": annotations}
        if case.instructions is not None:
            body["__doc__"] = case.instructions
        for f in case.fields:
            annotations[f.name] = _type(f.type)
            make = dspy.InputField if f.kind == "input" else dspy.OutputField
            kwargs = dict(f.constraints)
            if f.desc is not None:
                kwargs["desc"] = f.desc
            body[f.name] = make(**kwargs)
        sig = types.new_class(
            "".join(p.title() for p in case.name.split("_")),
            (dspy.Signature,),
            {},
            lambda ns: ns.update(body),
        )
    if case.module == "cot":
        sig = dspy.ChainOfThought(sig).predict.signature
    return sig


def format_case(case: Any) -> dict[str, Any]:
    import dspy

    sig = build_signature(case)
    demos = [dspy.Example(**{k: _value(v) for k, v in d.items()}) for d in case.demos]
    inputs = {k: _value(v) for k, v in case.inputs.items()}
    out: dict[str, Any] = {"case": case.name, "dspy": dspy.__version__}
    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        out[type(adapter).__name__] = adapter.format(sig, demos, dict(inputs))
    return out


def parse_case(case: Any, by_name: dict[str, Any]) -> dict[str, Any]:
    import dspy

    sig = build_signature(by_name[case.case])
    adapter = dspy.ChatAdapter() if case.adapter == "ChatAdapter" else dspy.JSONAdapter()
    row: dict[str, Any] = {
        "case": case.case,
        "adapter": case.adapter,
        "completion": case.completion,
    }
    try:
        row["result"] = cases.canonical(adapter.parse(sig, case.completion))
    except Exception as e:  # DSPy's verdict is data here: which completions it refuses
        row["error"] = type(e).__name__
    return row


def render() -> dict[str, str]:
    """File name -> JSON text of every golden file."""
    files = {}
    (GOLDEN / "pixel.png").write_bytes(cases.PIXEL_PNG)  # the local image file cases read
    for case in cases.CASES:
        files[f"{case.name}.json"] = _dump(format_case(case))
    by_name = {c.name: c for c in cases.CASES}
    files["parse.json"] = _dump([parse_case(c, by_name) for c in cases.PARSE_CASES])
    return files


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file would change")
    args = parser.parse_args()
    files = render()
    stale = [n for n, text in files.items() if _read(GOLDEN / n) != text]
    known = {p.name for p in GOLDEN.glob("*.json")}
    extra = sorted(known - set(files))
    if args.check:
        for name in stale + extra:
            print(f"stale: {name}")
        return 1 if stale or extra else 0
    for name in stale:
        (GOLDEN / name).write_text(files[name], encoding="utf-8")
        print(f"wrote {name}")
    for name in extra:
        (GOLDEN / name).unlink()
        print(f"removed {name}")
    print(f"{len(files)} golden files, {len(stale)} changed")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
