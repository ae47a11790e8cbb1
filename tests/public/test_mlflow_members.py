"""``dspex.mlflow`` is the one public MLflow path: explicit, sorted, and its implementation
package exports nothing of its own."""

import dspex.integrations.mlflow
import dspex.mlflow


def test_mlflow_all_is_sorted_and_complete() -> None:
    def group(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert dspex.mlflow.__all__ == sorted(dspex.mlflow.__all__, key=group)
    public = {n for n in vars(dspex.mlflow) if not n.startswith("_")}
    assert public == set(dspex.mlflow.__all__)


def test_the_implementation_package_exports_nothing() -> None:
    implementation = dspex.integrations.mlflow
    assert not hasattr(implementation, "__all__")
    assert {n for n in vars(implementation) if not n.startswith("_")} == set()


def test_the_loader_saved_models_name_still_imports() -> None:
    import importlib

    # Written as ``python_function.loader_module`` into every saved MLmodel file.
    loader = importlib.import_module("dspex.integrations.mlflow._loader")
    assert callable(loader._load_pyfunc)
