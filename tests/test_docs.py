"""Doc examples run: the ```python blocks of docs/*.md and the docstring examples."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import dspex

DOCS = Path(__file__).parent.parent / "docs"
_BLOCK = re.compile(r"(<!-- no-run -->\s*)?```python\n(.*?)```", re.DOTALL)


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("**/*.md") if "```python" in p.read_text())


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_doc_page_examples_run(page: Path, request: pytest.FixtureRequest) -> None:
    if ".compile(" in page.read_text():  # runs a flow: use the session's Prefect server
        request.getfixturevalue("prefect_server")
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for skip, code in _BLOCK.findall(page.read_text()):
        if not skip:
            exec(compile(code, str(page), "exec", dont_inherit=True), namespace)


def _modules() -> list[str]:
    names = ["dspex"]
    for info in pkgutil.walk_packages(dspex.__path__, "dspex."):
        if not info.name.endswith("__main__") and ".server" not in info.name:
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
