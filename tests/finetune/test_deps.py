"""Without the finetune extra, finetuning says how to install it (and import dspex stays
light: none of it is imported until used)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dspex.errors import ConfigurationError
from dspex.finetune import require


def test_a_missing_dependency_says_how_to_install_it() -> None:
    with pytest.raises(ConfigurationError, match=r"pip install 'dspex\[finetune\]'"):
        require("torch", "a_module_that_is_not_installed")


def test_importing_dspex_and_its_finetune_package_imports_no_torch() -> None:
    code = (
        "import sys, dspex, dspex.finetune, dspex.testing\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
