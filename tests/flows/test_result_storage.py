"""The JSON-only result storage block local runs save to Prefect: saved once, found again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dspex.flows._results import JsonOnlyResults, json_only_storage


@pytest.mark.usefixtures("prefect_server")
def test_a_folders_block_is_saved_once_and_loaded_by_later_runs(tmp_path: Path) -> None:
    folder = tmp_path / "prefect-results"
    first = json_only_storage(folder)
    again = json_only_storage(folder)  # a later run: loads the block instead of saving it
    assert again._block_document_id == first._block_document_id
    assert again.basepath == str(folder.resolve())
    assert folder.stat().st_mode & 0o777 == 0o700

    # The block of that name edited to point elsewhere (Prefect's database is writable by
    # whoever runs the server): not used, saved again for this folder.
    name = f"dspex-results-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]}"
    JsonOnlyResults(basepath=str(tmp_path / "elsewhere")).save(name, overwrite=True)
    fixed = json_only_storage(folder)
    assert fixed.basepath == str(folder.resolve())
    assert JsonOnlyResults.load(name).basepath == str(folder.resolve())
