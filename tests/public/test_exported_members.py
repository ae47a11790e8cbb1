"""The public surface of ``import dspex`` is explicit, sorted and light."""

import subprocess
import sys

import dspex


def test_all_is_sorted_and_complete() -> None:
    # isort-style, as ruff keeps it: CONSTANTS, then Classes, then functions.
    def group(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert dspex.__all__ == sorted(dspex.__all__, key=group)
    for name in dspex.__all__:
        assert hasattr(dspex, name), name
    public = {n for n in vars(dspex) if not n.startswith("_")}
    submodules = {
        "adapters",
        "callbacks",
        "errors",
        "evaluate",
        "finetune",
        "lm",
        "modules",
        "primitives",
        "signatures",
        "testing",
        "datasets",
        "cli",
        "integrations",
        "mlflow",
        "observability",
        "optimize",
        "traces",
        "retrievers",
        "teleprompt",
        "sandbox",
        "streaming",
        # installed as dspex.flows/.tasks/.deployments; present once something imports them
        "flows",
        "tasks",
        "deployments",
    }
    assert public - submodules - set(dspex.__all__) == set()


def test_import_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, dspex\n"
        "heavy = ['litellm', 'prefect', 'mlflow', 'duckdb', 'optuna', 'torch', 'pyarrow',"
        " 'transformers', 'aiohttp', 'pandas', 'rich', 'opentelemetry']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_errors_users_catch_are_exported_in_their_hierarchy() -> None:
    # A tampered saved program is bad data: ``except dspex.DataError`` still catches it.
    assert issubclass(dspex.ProgramIntegrityError, dspex.DataError)
    assert issubclass(dspex.DataError, dspex.UserError)
    assert dspex.ProgramIntegrityError is dspex.errors.ProgramIntegrityError
