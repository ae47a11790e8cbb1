"""``Code``: source code as a signature input or output (DSPy's ``dspy.Code``)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any, ClassVar

import pydantic

from dspex.adapters._types import _Type

__all__ = ["Code"]

_FENCED = re.compile(r"```(?:[^\n]*)\n(.*?)```", re.DOTALL)
_INLINE = re.compile(r"```(.*?)```", re.DOTALL)


class Code(_Type):
    """Source code; ``Code["java"]`` names its language (``python`` by default).

    As an input the code is written as is; as an output the LM is asked for a Markdown code
    block, and the code inside the first fence is the value (text without a fence is kept
    whole).

    Example:
        >>> import dspex
        >>> class Generate(dspex.Signature):
        ...     question: str = dspex.InputField()
        ...     code: dspex.Code["python"] = dspex.OutputField()
        >>> sig = Generate
        >>> dspex.ChatAdapter().parse(sig, "[[ ## code ## ]]\\n```python\\nprint(1)\\n```")
        {'code': Code_python(code='print(1)')}
    """

    code: str

    language: ClassVar[str] = "python"

    def format(self) -> str:
        return self.code

    @classmethod
    def description(cls) -> str:
        return (
            "Code represented in a string, specified in the `code` field. If this is an output "
            "field, the code field should follow the markdown code block format, e.g. \n"
            f"```{cls.language.lower()}\n{{code}}\n```\nProgramming language: {cls.language}"
        )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _accept_text(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, str):
            return {"code": _unfence(data)}
        if isinstance(data, dict):
            if "code" not in data:
                raise ValueError("`code` field is required for `dspex.Code`")
            if not isinstance(data["code"], str):
                raise ValueError(
                    f"`code` field must be a string, but received type: {type(data['code'])}"
                )
            return {"code": _unfence(data["code"])}
        raise ValueError(f"Received invalid value for `dspex.Code`: {data}")

    def __class_getitem__(cls, language: Any) -> Any:
        return _with_language(cls, str(language))


@cache
def _with_language(cls: type[Code], language: str) -> type[Code]:
    # One class per language (DSPy makes a new one per subscript; equal signatures are nicer).
    sub = pydantic.create_model(f"{cls.__name__}_{language}", __base__=cls)
    sub.language = language
    return sub


def _unfence(text: str) -> str:
    """The code inside the first Markdown fence of ``text``, else ``text`` itself."""
    match = _FENCED.search(text) or _INLINE.search(text)
    return match.group(1).strip() if match else text
