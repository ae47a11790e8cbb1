"""dspex: program language models; optimize them as durable, observable workloads.

Example:
    >>> import dspex
    >>> qa = dspex.ChainOfThought("question -> answer: int")
    >>> [name for name, _ in qa.named_predictors()]
    ['predict']
"""

from dspex import mlflow as mlflow  # public submodule: dspex.mlflow.log_model(...)
from dspex import traces as traces  # public submodule: dspex.traces.record(...)
from dspex._settings import configure, context
from dspex._version import __version__
from dspex.adapters import Adapter, ChatAdapter, JSONAdapter
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
from dspex.evaluate import Evaluate, EvaluationResult
from dspex.lm import LM, configure_cache, inspect_history
from dspex.modules import ChainOfThought, Predict
from dspex.primitives import Completions, Example, Module, Prediction, Usage
from dspex.signatures import InputField, OutputField, Signature, make_signature
from dspex.teleprompt import (
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    BootstrapFinetune,
    LabeledFewShot,
    MIPROv2,
)

__all__ = [
    "LM",
    "Adapter",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "Callback",
    "ChainOfThought",
    "ChatAdapter",
    "Completions",
    "ConfigurationError",
    "DataError",
    "DspexError",
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "Example",
    "InputField",
    "JSONAdapter",
    "LMError",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "OutputField",
    "ParseError",
    "Predict",
    "Prediction",
    "ProgramIntegrityError",
    "Signature",
    "SignatureError",
    "Usage",
    "UserError",
    "__version__",
    "configure",
    "configure_cache",
    "context",
    "inspect_history",
    "make_signature",
    "track_usage",
]
