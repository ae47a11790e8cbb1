"""The DSPy side of ``mipro_vs_dspy.py``: one ``dspy.MIPROv2`` (or, with ``optimizer:
random-search``, ``dspy.BootstrapFewShotWithRandomSearch``) compile, in its own process.

Run by the harness as ``<bench venv>/bin/python benchmarks/_dspy_side.py CONFIG.json``; it
imports only the standard library, DSPy and the harness's stdlib helpers (no dspex), so its
peak RSS and import time are DSPy's alone. It writes one JSON result to ``config["out"]``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mipro_vs_dspy import (
    heavy_modules_loaded,
    helper_peak_rss_mb,
    peak_rss_mb,
    requests_served,
)


def exact_match(example: Any, pred: Any, trace: Any = None) -> bool:
    return bool(str(example.answer).strip() == str(pred.answer).strip())


def _examples(rows: list[dict[str, Any]], input_keys: list[str]) -> list[Any]:
    import dspy

    return [dspy.Example(**row).with_inputs(*input_keys) for row in rows]


def _export(program: Any) -> dict[str, Any]:
    """Each predictor's instructions and demos, as plain JSON (the harness rebuilds them)."""
    predictors = {}
    for name, predictor in program.named_predictors():
        demos = []
        for demo in predictor.demos:
            row = demo.toDict() if hasattr(demo, "toDict") else dict(demo)
            demos.append({k: v for k, v in row.items() if k != "augmented"})
        predictors[name] = {"instructions": predictor.signature.instructions, "demos": demos}
    return {"predictors": predictors}


def run(config: dict[str, Any]) -> dict[str, Any]:
    # Offline and honest: no cost-map download, no cache that could answer a request.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "true"
    os.environ["DSPY_CACHEDIR"] = tempfile.mkdtemp(prefix="dspy-cache-", dir=config["workdir"])
    t0 = time.perf_counter()
    import dspy

    import_s = time.perf_counter() - t0
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/dspex-sim", api_base=config["url"], api_key="unused", cache=False)
    dspy.configure(lm=lm, adapter=dspy.ChatAdapter())

    data = json.loads(Path(config["data"]).read_text())
    trainset = _examples(data["train"], data["input_keys"])
    valset = _examples(data["dev"], data["input_keys"])
    program = dspy.ChainOfThought(data["signature"])
    if str(config.get("optimizer", "")).startswith("random-search"):
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            exact_match, num_candidate_programs=6, num_threads=config["threads"]
        )
        label = "dspy.BootstrapFewShotWithRandomSearch(6)"
    else:
        optimizer = dspy.MIPROv2(
            exact_match, auto="light", seed=config["seed"], num_threads=config["threads"]
        )
        label = "dspy.MIPROv2(auto='light')"

    before = requests_served(config["url"])
    t0 = time.perf_counter()
    winner = optimizer.compile(program, trainset=trainset, valset=valset)
    compile_s = time.perf_counter() - t0
    compile_requests = requests_served(config["url"]) - before
    rss_mb, helpers_mb, heavy = peak_rss_mb(), helper_peak_rss_mb(), heavy_modules_loaded()

    # DSPy's own verdict on its winner, on the same validation examples.
    evaluate = dspy.Evaluate(
        devset=valset, metric=exact_match, num_threads=config["threads"], display_progress=False
    )
    own = evaluate(winner)
    return {
        "side": "dspy",
        "optimizer": label,
        "versions": {"dspy": dspy.__version__, "python": sys.version.split()[0]},
        "import_s": import_s,
        "compile_s": compile_s,
        "compile_requests": compile_requests,
        "optimizer_score": getattr(winner, "score", None),
        "own_eval_score": float(getattr(own, "score", own)),
        "peak_rss_mb": rss_mb,
        "helper_peak_rss_mb": helpers_mb,
        "heavy_modules": heavy,
        "winner": _export(winner),
    }


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    result = run(config)
    Path(config["out"]).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
