"""The BootstrapFinetune flow: passing traces → SFT data → a LoRA adapter per predictor →
the program on its finetuned local model, evaluated, logged and registered.

1. run the program on the teacher LM over the trainset and keep the traces that pass the
   metric (the spine's bootstrap task, every training example, no labeled fill-in);
2. turn them into a chat SFT dataset per predictor (JSONL + Parquet), logged to MLflow as a
   training dataset;
3. train a LoRA adapter per predictor (trl + peft) on the target model — loss and learning
   rate per step to MLflow, progress to a Prefect artifact, checkpoints so a killed run
   resumes from the newest one;
4. log the adapters, point each predictor at ``local/<target>`` with its adapter, score that
   student on the valset, and finish through the spine (program JSON, model, registration).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from dspex.errors import UserError
from dspex.flows._spine import (
    finish_run,
    gather_results,
    open_run,
    run_inputs,
    skipped_examples,
)
from dspex.lm import LM
from dspex.optimize import OptimizeParams
from dspex.optimize._refs import resolve_program
from dspex.tasks.fewshot import bootstrap_candidate
from dspex.tasks.finetune import evaluate_student, finetune_predictor, sft_dataset

__all__ = ["finetune"]


@flow(
    name="dspex-bootstrap-finetune",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
    persist_result=False,
)
def finetune(params: OptimizeParams) -> dict[str, Any]:
    """Distil the program into a finetuned local model; returns the run's summary."""
    settings = params.settings
    target = settings.get("target") or _target_of(params)
    with open_run(params) as (spine, budget):
        run = run_inputs(params)
        spec = {
            "id": "traces",
            "kind": "bootstrap",
            "shuffle_seed": None,
            "max_bootstrapped_demos": len(params.trainset.load()),
            "seed": int(settings.get("seed", 0)),
        }
        (traces,), exhausted = gather_results(
            [bootstrap_candidate.submit(run, spec, params.concurrency, spine.runtime)]
        )
        work = spine.runs / "finetune" / spine.run_key
        uri, run_id = spine.tracking_uri, spine.mlflow_run_id
        data = sft_dataset(run, traces or {}, str(work / "data"), uri, run_id)
        futures = {
            name: finetune_predictor.submit(
                name,
                target,
                info["path"],
                info["fingerprint"],
                str(work / "train"),
                dict(settings.get("train_kwargs") or {}),
                uri,
                run_id,
            )
            for name, info in data.items()
            if info["rows"]
        }
        trained = {name: f.result() for name, f in futures.items()}
        winner = resolve_program(params.program).deepcopy()
        lms: dict[str, dict[str, Any]] = {}
        for name, predictor in winner.named_predictors():
            if name in trained:
                lm = LM(f"local/{target}", adapter=trained[name]["adapter_dir"])
                predictor.lm = lm
                lms[name] = lm.dump_config()
            elif params.lm is not None:  # no passing trace: it stays on the teacher LM
                predictor.lm = params.lm.build()
                lms[name] = predictor.lm.dump_config()
        scored = evaluate_student(run, lms, params.concurrency, spine.runtime)
        rows = [
            {
                "id": "finetuned",
                "kind": "finetuned",
                "demos": 0,
                "config": ", ".join(f"{n}: {t['rows']} traces" for n, t in trained.items()),
                **scored,
            }
        ]
        skipped = {"bootstrap": skipped_examples([traces])}
        return finish_run(spine, winner, rows, "finetuned", exhausted, budget, skipped)


def _target_of(params: OptimizeParams) -> str:
    """The model to finetune when ``settings.target`` is unset: the run's ``local/`` LM."""
    model = params.lm.model if params.lm is not None else ""
    if not model.startswith("local/"):
        raise UserError(
            "BootstrapFinetune needs the model to finetune: set settings.target to a model "
            f"directory or hub id, or run it on a local/<model> LM (the run's LM: {model!r})."
        )
    return model.removeprefix("local/")
