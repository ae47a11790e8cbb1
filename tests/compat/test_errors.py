"""User mistakes are also the builtin exceptions DSPy raises, so DSPy's ``except`` clauses
keep catching them."""

import pytest

import dspex


def test_the_hierarchy() -> None:
    assert issubclass(dspex.UserError, ValueError)
    assert issubclass(dspex.SignatureError, ValueError)
    assert issubclass(dspex.SignatureError, TypeError)
    for error in (dspex.ConfigurationError, dspex.DataError, dspex.ProgramIntegrityError):
        assert issubclass(error, ValueError) and issubclass(error, dspex.DspexError)


def test_except_clauses_written_for_dspy_catch_dspex_errors() -> None:
    with pytest.raises(ValueError):
        dspex.Signature("no arrow here")
    with pytest.raises(TypeError):

        class Bare(dspex.Signature):
            question: str

    with pytest.raises(ValueError, match="No LM is configured"):
        dspex.Predict("question -> answer")(question="?")
    with pytest.raises(ValueError):
        dspex.Example(a=1).inputs()
    with pytest.raises(ValueError):
        dspex.Predict("question -> answer")("positional")
