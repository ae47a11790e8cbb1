"""The JSON-only result storage block local runs save to Prefect: saved once, found again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dspex.flows._results import JsonOnlyResults, _saved, json_only_storage


@pytest.mark.usefixtures("prefect_server")
def test_a_folders_block_is_saved_once_and_loaded_by_later_runs(tmp_path: Path) -> None:
    folder = tmp_path / "prefect-results"
    basepath = str(folder.resolve())
    name = f"dspex-results-{hashlib.sha256(basepath.encode()).hexdigest()[:16]}"
    assert _saved(name, basepath) is None  # nothing saved yet: json_only_storage saves it
    first = json_only_storage(folder)
    found = _saved(name, basepath)  # what a later run loads instead of saving again
    assert found is not None and found._block_document_id == first._block_document_id
    again = json_only_storage(folder)
    assert again._block_document_id == first._block_document_id
    assert again.basepath == basepath
    assert folder.stat().st_mode & 0o777 == 0o700

    # The block of that name edited to point elsewhere (Prefect's database is writable by
    # whoever runs the server): not used, saved again for this folder.
    JsonOnlyResults(basepath=str(tmp_path / "elsewhere")).save(name, overwrite=True)
    assert _saved(name, basepath) is None
    fixed = json_only_storage(folder)
    assert fixed.basepath == basepath
    assert JsonOnlyResults.load(name).basepath == basepath
