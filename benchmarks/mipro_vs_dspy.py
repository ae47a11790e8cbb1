"""DSPy's MIPROv2 and dspex's MIPROv2, side by side, on one simulated LM.

Both optimize ``ChainOfThought("question -> answer: int")`` on the bundled ``arithmetic`` task
(``task.split(train=200, dev=100, seed=0)``, all 300 of its examples; metric: exact match
of ``answer``) with
``auto="light"``, the same seed and 16 threads/concurrency, against **one** loopback
simulated-LM server (``dspex.testing.start_server_process``, its own process, 200 ms per
request). Each side runs in its own subprocess, one after the other, so imports and peak RSS
are per side:

* DSPy: ``dspy.MIPROv2(metric, auto="light", seed=S, num_threads=16).compile(program,
  trainset=..., valset=...)`` with ``dspy.LM("openai/dspex-sim", api_base=..., cache=False)``,
  DSPy's memory and disk caches off and ``dspy.ChatAdapter`` (``benchmarks/_dspy_side.py``,
  run by the bench venv's interpreter).
* dspex: ``dspex.MIPROv2(metric, auto="light", seed=S).compile(program, trainset=...,
  valset=..., lm=..., concurrency=16, runs_dir=<fresh>)`` with a fresh ``DSPEX_CACHE_DIR``
  (``--dspex-optimizer random-search`` runs ``BootstrapFewShotWithRandomSearch`` instead).
  The process starts Prefect's local API server itself (``flows/local.py``), inside compile.
* dspex-server: the same, with a Prefect API server already running (``PREFECT_API_URL``,
  started by the harness with its own ``PREFECT_HOME``), as under ``prefect server start``,
  in a notebook's second compile, or on a deployment's worker; fresh runs and cache dirs.

Reported per side: the returned program's score on all validation examples, evaluated by
dspex's ``Evaluate`` for both winners (DSPy's winner is rebuilt from its instructions and
demos; DSPy's own ``Evaluate`` score is shown too), the LM requests the server answered during
``compile`` (its ``/stats`` before and after), the compile's wall time, and peak RSS
(``ru_maxrss`` after compile, plus the peak of any helper process still running, such as
Prefect's ephemeral API server). For dspex it also reports the fixed cost of a local
``compile()``: the same compile run again in a fresh process on the same runs and cache
directories (every task result and LM call is reused, so what is left is Prefect start-up,
MLflow set-up and bookkeeping), and ``import dspex, prefect, mlflow`` in a fresh interpreter.

DSPy is a benchmark-only dependency; it lives in its own virtualenv (never in pyproject)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -e . "dspy==3.4.*" "litellm!=1.82.7,!=1.82.8"

Usage::

    .venv-bench/bin/python benchmarks/mipro_vs_dspy.py                # full: 200/100, 200 ms
    .venv-bench/bin/python benchmarks/mipro_vs_dspy.py --quick        # smoke: 50/50, 50 ms
    .venv-bench/bin/python benchmarks/mipro_vs_dspy.py --json out.json --sides dspex
    # BootstrapFewShotWithRandomSearch(6) on both sides (dspex races its candidates):
    .venv-bench/bin/python benchmarks/mipro_vs_dspy.py --dspex-optimizer random-search
    .venv-bench/bin/python benchmarks/mipro_vs_dspy.py --dspex-optimizer random-search --task factqa

The last table compares each dspex side with DSPy's on the issue's targets: score difference,
LM requests ratio, compile wall ratio, and peak RSS ratio (helper processes, such as Prefect's
local API server, included). dspex's side runs with a ``DSPEX_CACHE_DIR`` as on a machine where
dspex has run before (the migrated MLflow store template exists) and a fresh LM cache.

The script itself needs only dspex; the DSPy side runs under ``--dspy-python`` (default: this
interpreter when it can import dspy, else ``.venv-bench/bin/python``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

# Stdlib only at module level: ``_dspy_side.py`` imports the helpers below without dspex.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIGNATURE = "question -> answer: int"
SIGNATURES = {"arithmetic": SIGNATURE, "factqa": "question -> answer"}
# Unset for every child: compile() must run locally (ephemeral Prefect, MLflow on SQLite).
_SERVER_ENV = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")


# -- measurement helpers (shared with _dspy_side.py) -------------------------------------------
def requests_served(url: str) -> int:
    """Requests the simulator server has answered so far (its ``GET /stats``)."""
    root = url.removesuffix("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as resp:
        return int(json.loads(resp.read())["requests"])


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def helper_peak_rss_mb() -> float:
    """Summed peak RSS (``VmHWM``) of this process's live descendants, e.g. Prefect's server."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


# Big imports worth knowing about when comparing peak RSS.
HEAVY_MODULES = (
    "litellm",
    "openai",
    "prefect",
    "prefect.server.api.server",
    "mlflow",
    "optuna",
    "matplotlib",
    "pandas",
    "pyarrow",
    "duckdb",
    "sqlalchemy",
    "torch",
)


def heavy_modules_loaded() -> list[str]:
    return [m for m in HEAVY_MODULES if m in sys.modules]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# -- the dspex side (a worker process) ---------------------------------------------------------
def exact_match(example: Any, pred: Any, trace: Any = None) -> bool:
    return bool(str(example.answer).strip() == str(pred.answer).strip())


def _dspex_optimizer(name: str, seed: int) -> tuple[Any, str]:
    import dspex

    if name == "mipro":
        return dspex.MIPROv2(exact_match, auto="light", seed=seed), "dspex.MIPROv2(auto='light')"
    racing = name == "random-search"  # "random-search-full": every candidate on every row
    optimizer = dspex.BootstrapFewShotWithRandomSearch(
        exact_match, num_candidate_programs=6, seed=seed, racing=racing
    )
    return (
        optimizer,
        f"dspex.BootstrapFewShotWithRandomSearch(6{'' if racing else ', racing=False'})",
    )


def run_dspex_worker(config: dict[str, Any]) -> dict[str, Any]:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "true"
    # What lasts on a machine where dspex has run before (the migrated MLflow store
    # template) is under DSPEX_CACHE_DIR; the LM cache itself is fresh for every compile.
    os.environ["DSPEX_CACHE_DIR"] = config["machine_cache"]
    os.environ["DSPEX_RUNS_DIR"] = config["runs_dir"]
    if config.get("prefect_api_url"):  # the "dspex-server" side: a Prefect server is running
        os.environ["PREFECT_API_URL"] = config["prefect_api_url"]
    t0 = time.perf_counter()
    import dspex

    import_s = time.perf_counter() - t0
    dspex.configure_cache(directory=config["cache_dir"])
    data = json.loads(Path(config["data"]).read_text())
    keys = data["input_keys"]
    trainset = [dspex.Example(row).with_inputs(*keys) for row in data["train"]]
    valset = [dspex.Example(row).with_inputs(*keys) for row in data["dev"]]
    lm = dspex.LM("openai/dspex-sim", api_base=config["url"], api_key="unused")
    program = dspex.ChainOfThought(data["signature"])
    optimizer, label = _dspex_optimizer(config["optimizer"], config["seed"])

    def timed_compile() -> tuple[Any, float, int]:
        before, t0 = requests_served(config["url"]), time.perf_counter()
        timeline["compile_start"] = time.time()
        winner = optimizer.compile(
            program,
            trainset=trainset,
            valset=valset,
            lm=lm,
            concurrency=config["threads"],
            runs_dir=config["runs_dir"],
        )
        return winner, time.perf_counter() - t0, requests_served(config["url"]) - before

    timeline: dict[str, float] = {}
    winner, compile_s, compile_requests = timed_compile()
    timeline["compile_end"] = time.time()
    result = optimizer.last_result
    out = {
        "side": "dspex",
        "optimizer": label,
        "versions": {d: _version(d) for d in ("dspex", "prefect", "mlflow", "optuna", "litellm")}
        | {"python": sys.version.split()[0]},
        "import_s": import_s,
        "compile_s": compile_s,
        "compile_requests": compile_requests,
        "optimizer_score": result.score if result is not None else None,
        "own_eval_score": None,  # the harness's dspex Evaluate is dspex's own
        "peak_rss_mb": peak_rss_mb(),
        "helper_peak_rss_mb": helper_peak_rss_mb(),
        "heavy_modules": heavy_modules_loaded(),
        "winner": {"state": winner.dump_state()},
        "timeline": timeline,
    }
    if config.get("warm_repeat"):
        # The same compile once more in this process: Prefect's server is already up.
        _, out["warm_compile_s"], out["warm_compile_requests"] = timed_compile()
    return out


# -- the harness -------------------------------------------------------------------------------
def _write_data(
    workdir: Path, n_train: int, n_dev: int, name: str = "arithmetic"
) -> tuple[Path, list[Any]]:
    from dspex.datasets import load_task

    task = load_task(name)
    train, dev, _ = task.split(train=n_train, dev=n_dev, seed=0)
    keys = list(task.input_keys)
    data = {
        "signature": SIGNATURES[name],
        "input_keys": keys,
        "train": [dict(ex.items()) for ex in train],
        "dev": [dict(ex.items()) for ex in dev],
    }
    path = workdir / "data.json"
    path.write_text(json.dumps(data))
    return path, dev


def _run_worker(name: str, cmd: list[str], config: dict[str, Any], workdir: Path) -> dict:
    """Run one side in a fresh process; its logs go to ``<workdir>/<name>.log``."""
    config_path = workdir / f"{name}.config.json"
    config = {**config, "out": str(workdir / f"{name}.result.json")}
    config_path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV}
    log = workdir / f"{name}.log"
    print(f"[{name}] running ... (log: {log})", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [*cmd, str(config_path)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise SystemExit(f"[{name}] failed (exit {proc.returncode}); last lines:\n{tail}")
    result: dict[str, Any] = json.loads(Path(config["out"]).read_text())
    result["process_s"] = wall
    print(f"[{name}] done in {wall:.1f} s", flush=True)
    return result


# Start-up probes, each timed in fresh interpreters after its imports: what a local compile()
# pays before any LM work. The Prefect probe starts the ephemeral API server (as compile()
# does when no server is configured) and runs an empty flow; the MLflow probe creates a SQLite
# store (as dspex does under the runs directory) and logs one run.
PROBES = {
    "import dspex, prefect, mlflow": ("", "import dspex, prefect, mlflow"),
    "import dspex": ("", "import dspex"),
    "empty Prefect flow (ephemeral server start + run)": (
        "from prefect import flow\n@flow(persist_result=False)\ndef empty():\n    return 1\n",
        "empty()",
    ),
    "MLflow: new SQLite store + one run": (
        "import tempfile, mlflow\nd = tempfile.mkdtemp()\n",
        "mlflow.set_tracking_uri(f'sqlite:///{d}/mlflow.db')\n"
        "with mlflow.start_run():\n    mlflow.log_param('x', 1)",
    ),
}


def _fresh_timing(python: str, setup: str, statement: str, repeats: int = 3) -> float:
    """Median seconds of ``statement`` in fresh interpreters, after ``setup``."""
    code = (
        f"import time\n{setup}\nt = time.perf_counter()\n{statement}\n"
        "print(f'SECONDS={time.perf_counter() - t}')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "true"
    times = []
    with tempfile.TemporaryDirectory() as home:
        for _ in range(repeats):
            out = subprocess.run(
                [python, "-c", code], capture_output=True, text=True, env=env, cwd=home
            )
            marks = [ln for ln in out.stdout.splitlines() if ln.startswith("SECONDS=")]
            if out.returncode != 0 or not marks:
                raise SystemExit(f"timing {statement!r} failed:\n{out.stderr[-2000:]}")
            times.append(float(marks[-1].removeprefix("SECONDS=")))
    return statistics.median(times)


def _rebuild(winner: dict[str, Any], signature: str = SIGNATURE) -> Any:
    """A dspex ChainOfThought carrying a winner's instructions and demos."""
    import dspex

    program = dspex.ChainOfThought(signature)
    if "state" in winner:
        return program.load_state(winner["state"])
    for name, predictor in program.named_predictors():
        saved = winner["predictors"][name]
        predictor.signature = predictor.signature.with_instructions(saved["instructions"])
        predictor.demos = [dspex.Example(d) for d in saved["demos"]]
    return program


def _evaluate(
    winner: dict[str, Any], url: str, devset: list[Any], threads: int, signature: str = SIGNATURE
) -> float:
    import dspex

    program = _rebuild(winner, signature)
    lm = dspex.LM("openai/dspex-sim", api_base=url, api_key="unused", cache=False)
    for predictor in program.predictors():
        predictor.lm = lm
    result = dspex.Evaluate(devset=devset, metric=exact_match, concurrency=threads, progress=False)(
        program
    )
    if result.n_errors:
        print(f"  warning: {result.n_errors} evaluation errors: {result.errors[0].error}")
    return float(result.score)


def _default_optimizer() -> str:
    import dspex

    return "mipro" if hasattr(dspex, "MIPROv2") else "random-search"


def _default_dspy_python() -> str:
    probe = subprocess.run([sys.executable, "-c", "import dspy"], capture_output=True)
    if probe.returncode == 0:
        return sys.executable
    return str(ROOT / ".venv-bench" / "bin" / "python")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 50/50 examples, 50 ms")
    p.add_argument("--train", type=int, help="training examples (default 200; quick 50)")
    p.add_argument("--dev", type=int, help="validation examples (default 100; quick 50)")
    p.add_argument("--latency", type=float, help="seconds per LM request (0.2; quick 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=16, help="num_threads / concurrency")
    p.add_argument(
        "--dspex-optimizer",
        choices=("mipro", "random-search", "random-search-full"),
        help="both sides run it (random-search: DSPy's BootstrapFewShotWithRandomSearch(6); "
        "random-search-full: dspex without racing)",
    )
    p.add_argument("--task", default="arithmetic", choices=("arithmetic", "factqa"))
    p.add_argument(
        "--sides",
        default="dspy,dspex,dspex-server",
        help="comma-separated: dspy, dspex, dspex-server (a Prefect server already running)",
    )
    p.add_argument("--no-overhead", action="store_true", help="skip the fixed-overhead runs")
    p.add_argument("--dspy-python", help="interpreter with dspy installed")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--worker", choices=("dspex",), help=argparse.SUPPRESS)
    p.add_argument("worker_config", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.train = args.train or (50 if args.quick else 200)
    # arithmetic has 300 examples; auto="light" scores on 100 validation examples, so with
    # exactly 100 both optimizers select on the same ones (neither draws its own subsample).
    args.dev = args.dev or (50 if args.quick else 100)
    args.latency = args.latency if args.latency is not None else (0.05 if args.quick else 0.2)
    return args


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from dspex.testing import start_server_process

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    optimizer = args.dspex_optimizer or _default_optimizer()
    dspy_python = args.dspy_python or _default_dspy_python()
    data, devset = _write_data(workdir, args.train, args.dev, args.task)
    report: dict[str, Any] = {
        "setup": {
            "task": args.task,
            "train": args.train,
            "dev": args.dev,
            "latency_s": args.latency,
            "seed": args.seed,
            "threads": args.threads,
            "dspex_optimizer": optimizer,
            "machine": f"{os.cpu_count()} CPUs, {sys.platform}",
        },
        "sides": {},
    }
    with start_server_process(args.task, latency=args.latency) as server:
        base = {
            "optimizer": optimizer,
            "url": server.url,
            "data": str(data),
            "seed": args.seed,
            "threads": args.threads,
            "workdir": str(workdir),
        }
        dspex_cfg = {
            **base,
            "optimizer": optimizer,
            "runs_dir": str(workdir / "dspex-runs"),
            "cache_dir": str(workdir / "dspex-cache"),
        }
        dspex_cfg["machine_cache"] = _machine_cache(workdir)
        _compile_bytecode()
        dspex_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "dspex"]
        for side in sides:
            if side == "dspy":
                cmd = [dspy_python, str(HERE / "_dspy_side.py")]
                result = _run_worker("dspy", cmd, base, workdir)
            elif side == "dspex":
                result = _run_worker("dspex", dspex_cmd, dspex_cfg, workdir)
            elif side == "dspex-server":
                result = _run_with_prefect_server(dspex_cmd, dspex_cfg, workdir)
            else:
                raise SystemExit(f"--sides: unknown side {side!r} (dspy, dspex, dspex-server)")
            report["sides"][side] = result
        if "dspex" in sides and not args.no_overhead:
            rerun_cfg = {**dspex_cfg, "warm_repeat": True}
            report["dspex_cached_rerun"] = _run_worker("dspex-rerun", dspex_cmd, rerun_cfg, workdir)
        for side, result in report["sides"].items():
            print(f"[{side}] evaluating the winner with dspex Evaluate ...", flush=True)
            result["val_score"] = _evaluate(
                result["winner"], server.url, devset, args.threads, SIGNATURES[args.task]
            )
    if not args.no_overhead:
        print("timing start-up in fresh interpreters ...", flush=True)
        template_probe = (
            "import os, tempfile, mlflow\n"
            f"os.environ['DSPEX_CACHE_DIR'] = {_machine_cache(workdir)!r}\n"
            "from dspex.integrations.mlflow._tracking import seed_sqlite_store\n"
            "d = tempfile.mkdtemp()\n",
            "seed_sqlite_store(f'sqlite:///{d}/mlflow.db')\n"
            "mlflow.set_tracking_uri(f'sqlite:///{d}/mlflow.db')\n"
            "with mlflow.start_run():\n    mlflow.log_param('x', 1)",
        )
        probes = {**PROBES, "MLflow: store copied from dspex's template + one run": template_probe}
        report["startup_s"] = {
            name: _fresh_timing(sys.executable, setup, stmt)
            for name, (setup, stmt) in probes.items()
        }
        if "dspy" in sides:
            report["startup_s"]["import dspy"] = _fresh_timing(dspy_python, "", "import dspy")
    return report


def _compile_bytecode() -> None:
    """Byte-compile dspex's own modules, as installing a package does (DSPy's, Prefect's and
    MLflow's were compiled by pip). Run from a checkout with ``PYTHONDONTWRITEBYTECODE`` set,
    dspex alone would otherwise be compiled from source in every fresh process (~0.4 s)."""
    import compileall

    import dspex

    package = Path(dspex.__file__).parent
    # compileall skips linked folders: dspex/flows, dspex/tasks, dspex/deployments are links.
    for root in [package, *(p for p in package.iterdir() if p.is_symlink() and p.is_dir())]:
        compileall.compile_dir(str(root), quiet=1)


def _machine_cache(workdir: Path) -> str:
    """A ``DSPEX_CACHE_DIR`` as on a machine where dspex has run once: the MLflow store
    template made (``dspex.integrations.mlflow._tracking``), no LM response cached."""
    from dspex.integrations.mlflow._tracking import seed_sqlite_store

    machine = workdir / "machine-cache"
    previous = os.environ.get("DSPEX_CACHE_DIR")
    os.environ["DSPEX_CACHE_DIR"] = str(machine)
    try:
        seed_sqlite_store(f"sqlite:///{workdir / 'warm-up' / 'mlflow.db'}")
    finally:
        if previous is None:
            os.environ.pop("DSPEX_CACHE_DIR")
        else:
            os.environ["DSPEX_CACHE_DIR"] = previous
    return str(machine)


def _run_with_prefect_server(cmd: list[str], config: dict[str, Any], workdir: Path) -> dict:
    """The dspex side in a fresh process, with a Prefect API server already running (as with
    ``prefect server start`` or a deployment's worker): no server start-up inside compile().
    Its own runs and cache directories, so nothing is reused from the other side."""
    from dspex.flows.local import LocalServer

    home = workdir / "prefect-home"
    home.mkdir(exist_ok=True)
    previous = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    try:
        server = LocalServer()
    finally:
        if previous is None:
            os.environ.pop("PREFECT_HOME")
        else:
            os.environ["PREFECT_HOME"] = previous
    try:
        url = server.wait_ready()
        config = {
            **config,
            "prefect_api_url": url,
            "runs_dir": str(workdir / "dspex-server-runs"),
            "cache_dir": str(workdir / "dspex-server-cache"),
        }
        result = _run_worker("dspex-server", cmd, config, workdir)
    finally:
        server.stop()
    result["optimizer"] += " [Prefect server running]"
    return result


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _ratios(report: dict[str, Any]) -> list[str]:
    """Each dspex side against DSPy's: the issue's targets, one row per side."""
    sides = report["sides"]
    ref = sides.get("dspy")
    if ref is None:
        return []
    ref_rss = ref["peak_rss_mb"] + (ref.get("helper_peak_rss_mb") or 0)
    lines = [
        "",
        "| dspex side vs DSPy | score (dspex − DSPy) | LM requests ratio | wall ratio "
        "| peak RSS ratio (helpers incl.) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for side, r in sides.items():
        if side == "dspy":
            continue
        score = (r.get("val_score") or 0) - (ref.get("val_score") or 0)
        rss = r["peak_rss_mb"] + (r.get("helper_peak_rss_mb") or 0)
        lines.append(
            f"| {side} | {score:+.1f} | {r['compile_requests'] / ref['compile_requests']:.2f}× "
            f"| {r['compile_s'] / ref['compile_s']:.2f}× | {rss / ref_rss:.2f}× |"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    s = report["setup"]
    lines = [
        f"{s['task']}, {s['train']} train / {s['dev']} validation, simulated LM at "
        f"{s['latency_s'] * 1000:.0f} ms over loopback HTTP, seed {s['seed']}, "
        f"{s['threads']} threads; {s['machine']}",
        "",
        "| side | optimizer | val score (dspex Evaluate) | own Evaluate | optimizer's best "
        "| LM requests | compile wall s | peak RSS MB (+ helpers) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for side, r in report["sides"].items():
        helpers = r.get("helper_peak_rss_mb") or 0
        rss = f"{r['peak_rss_mb']:.0f}" + (f" (+ {helpers:.0f})" if helpers else "")
        lines.append(
            f"| {side} | {r['optimizer']} | {_fmt(r.get('val_score'), '.1f')} "
            f"| {_fmt(r.get('own_eval_score'), '.1f')} | {_fmt(r.get('optimizer_score'), '.1f')} "
            f"| {r['compile_requests']:,} | {r['compile_s']:.1f} | {rss} |"
        )
    lines += _ratios(report)
    lines += ["", "Heavy modules imported by the end of compile:", ""]
    for side, r in report["sides"].items():
        lines.append(f"- {side}: {', '.join(r.get('heavy_modules') or []) or 'none of note'}")
    rerun = report.get("dspex_cached_rerun")
    if rerun or report.get("startup_s"):
        lines += ["", "Fixed overhead of a local dspex compile():", ""]
    if rerun:
        lines.append(
            f"- same compile again in a fresh process, everything cached: "
            f"{rerun['compile_s']:.1f} s wall, {rerun['compile_requests']} LM requests "
            f"(its process, both compiles included: {rerun['process_s']:.1f} s)"
        )
        lines.append(
            f"- and once more in that same process (Prefect's server already up): "
            f"{rerun['warm_compile_s']:.1f} s wall, {rerun['warm_compile_requests']} LM requests"
        )
    for what, secs in (report.get("startup_s") or {}).items():
        lines.append(f"- {what}, in a fresh interpreter: {secs * 1000:,.0f} ms (median of 3)")
    versions: dict[str, Any] = {}
    for r in report["sides"].values():
        versions |= {k: v for k, v in r.get("versions", {}).items() if v}
    lines += ["", "versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.worker == "dspex":
        config = json.loads(Path(args.worker_config).read_text())
        result = run_dspex_worker(config)
        Path(config["out"]).write_text(json.dumps(result, indent=2, default=str))
        return
    workdir = Path(tempfile.mkdtemp(prefix="mipro-vs-dspy-"))
    try:
        report = run_benchmark(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}")
    print()
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
