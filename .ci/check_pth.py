"""Fail if site-packages holds a ``.pth`` file that is not on the allowlist.

A ``.pth`` line that starts with ``import`` runs at every interpreter start, before any of our
code: the compromised litellm 1.82.7/1.82.8 releases shipped one. Each allowed file is named by
a pattern and its whole content must match the expected form.
"""

from __future__ import annotations

import re
import site
import sys
from pathlib import Path

ALLOWED = {
    # pip install -e . (setuptools' editable finder for dspex)
    r"__editable__\.dspex-[\w.+-]+\.pth": (
        r"import __editable___dspex_\w+_finder; __editable___dspex_\w+_finder\.install\(\)\s*"
    ),
    # setuptools' distutils shim
    r"distutils-precedence\.pth": (
        r"import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os\.environ\.get\(var, "
        r"'(local|stdlib)'\) == 'local'; enabled and __import__\('_distutils_hack'\)"
        r"\.add_shim\(\);\s*"
    ),
}


def main(argv: list[str]) -> int:
    """Check the given site-packages directories (default: this interpreter's)."""
    directories = [Path(a) for a in argv] or [Path(p) for p in site.getsitepackages()]
    bad = []
    for directory in directories:
        for pth in sorted(directory.glob("*.pth")):
            text = pth.read_text(errors="replace")
            if not any(
                re.fullmatch(name, pth.name) and re.fullmatch(body, text, flags=re.S)
                for name, body in ALLOWED.items()
            ):
                bad.append(f"{pth}: {text[:200]!r}")
    if bad:
        print("Unexpected .pth files (code that runs at interpreter start):", file=sys.stderr)
        print("\n".join(bad), file=sys.stderr)
        print(
            "Find the package that installed it (pip show -f) before allowing it in "
            ".ci/check_pth.py.",
            file=sys.stderr,
        )
        return 1
    print("site-packages: no unexpected .pth files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
