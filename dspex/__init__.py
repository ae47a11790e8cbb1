"""dspex: program language models; optimize them as durable, observable workloads.

Example:
    >>> import dspex
    >>> qa = dspex.ChainOfThought("question -> answer: int")
    >>> [name for name, _ in qa.named_predictors()]
    ['predict']
"""

import typing as _typing

from dspex._settings import configure, context, settings
from dspex._version import __version__
from dspex.adapters import Adapter, ChatAdapter, Code, History, Image, JSONAdapter, ToolCalls
from dspex.callbacks import Callback, track_usage
from dspex.errors import (
    ConfigurationError,
    DataError,
    DspexError,
    EvaluationError,
    LMError,
    ParseError,
    ProgramIntegrityError,
    SignatureError,
    UserError,
)
from dspex.evaluate import Evaluate, EvaluationResult, majority
from dspex.lm import LM, BaseLM, configure_cache, inspect_history
from dspex.modules import (
    BestOfN,
    ChainOfThought,
    CodeAct,
    MultiChainComparison,
    Parallel,
    Predict,
    ProgramOfThought,
    ReAct,
    Refine,
    Retrieve,
)
from dspex.primitives import Completions, Example, Module, Prediction, Usage
from dspex.primitives._tool import Tool
from dspex.primitives._whole import load
from dspex.signatures import InputField, OutputField, Signature, make_signature

if _typing.TYPE_CHECKING:
    from dspex import mlflow as mlflow
    from dspex import observability as observability
    from dspex import retrievers as retrievers
    from dspex import streaming as streaming
    from dspex import traces as traces
    from dspex.retrievers import Embedder
    from dspex.retrievers._colbert import ColBERTv2
    from dspex.sandbox import PythonInterpreter
    from dspex.teleprompt import (
        BootstrapFewShot,
        BootstrapFewShotWithRandomSearch,
        BootstrapFinetune,
        LabeledFewShot,
        MIPROv2,
    )

# Imported on first use (PEP 562), so `import dspex` stays fast: the optimizers (their
# parameter models), the MLflow flavor and the trace store are not needed to run a program.
_LAZY = {
    "BootstrapFewShot": "dspex.teleprompt",
    "ColBERTv2": "dspex.retrievers._colbert",  # DSPy's top-level name
    "BootstrapFewShotWithRandomSearch": "dspex.teleprompt",
    "BootstrapFinetune": "dspex.teleprompt",
    "LabeledFewShot": "dspex.teleprompt",
    "MIPROv2": "dspex.teleprompt",
    "Embedder": "dspex.retrievers",  # numpy and the embedding clients load on first use
    "PythonInterpreter": "dspex.sandbox",  # the code sandbox (Deno + Pyodide)
    "mlflow": "dspex.mlflow",  # a public submodule: dspex.mlflow.log_model(...)
    "streamify": "dspex.streaming",  # streaming programs (docs/streaming.md)
    "streaming": "dspex.streaming",  # a public submodule: dspex.streaming.StreamListener
    "observability": "dspex.observability",  # dspex.observability.instrument()
    "retrievers": "dspex.retrievers",  # a public submodule: dspex.retrievers.BM25(...)
    "traces": "dspex.traces",  # a public submodule: dspex.traces.record(...)
}


def __getattr__(name: str) -> _typing.Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dspex' has no attribute {name!r}")
    from importlib import import_module

    module = import_module(module_name)
    value = module if module_name == f"dspex.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "LM",
    "Adapter",
    "BaseLM",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "Callback",
    "ChainOfThought",
    "ChatAdapter",
    "Code",
    "CodeAct",
    "ColBERTv2",
    "Completions",
    "ConfigurationError",
    "DataError",
    "DspexError",
    "Embedder",
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "Example",
    "History",
    "Image",
    "InputField",
    "JSONAdapter",
    "LMError",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "MultiChainComparison",
    "OutputField",
    "Parallel",
    "ParseError",
    "Predict",
    "Prediction",
    "ProgramIntegrityError",
    "ProgramOfThought",
    "PythonInterpreter",
    "ReAct",
    "Refine",
    "Retrieve",
    "Signature",
    "SignatureError",
    "Tool",
    "ToolCalls",
    "Usage",
    "UserError",
    "__version__",
    "configure",
    "configure_cache",
    "context",
    "inspect_history",
    "load",
    "majority",
    "make_signature",
    "settings",
    "streamify",
    "track_usage",
]
