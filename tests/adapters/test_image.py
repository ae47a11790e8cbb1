"""``dspex.Image``: DSPy's image type, sent as content parts; files only when code asks."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.adapters._image import MAX_IMAGE_BYTES
from dspex.testing import DummyLM

from .golden.cases import PIXEL_PNG

URL = "https://example.com/cat.png"


class Describe(dspex.Signature):
    """Describe the images."""

    photo: dspex.Image = dspex.InputField()
    others: list[dspex.Image] = dspex.InputField()
    caption: str = dspex.OutputField()


def _parts(content: Any) -> list[str]:
    return [p["image_url"]["url"] for p in content if p["type"] == "image_url"]


@pytest.mark.parametrize("adapter", [dspex.ChatAdapter(), dspex.JSONAdapter()])
def test_an_image_input_reaches_the_lm_as_content_parts(adapter: dspex.Adapter) -> None:
    answer = {"caption": "a cat"}
    lm = DummyLM([answer])
    demo = dspex.Example(photo=dspex.Image(URL), others=[], caption="demo")
    predict = dspex.Predict(Describe, lm=lm, adapter=adapter)
    predict.demos = [demo]
    pred = predict(photo=dspex.Image(url=URL), others=[dspex.Image("gs://b/x.webp")])
    assert pred.caption == "a cat"
    messages = lm.requests[-1].messages
    assert isinstance(messages[0]["content"], str)  # the system message stays text
    assert _parts(messages[1]["content"]) == [URL]  # the demo's image
    last = messages[-1]["content"]
    assert _parts(last) == [URL, "gs://b/x.webp"]
    assert last[0] == {"type": "text", "text": "[[ ## photo ## ]]\n"}
    assert all("CUSTOM-TYPE" not in p.get("text", "") for p in last)


def test_the_system_message_names_the_type_as_dspy_does() -> None:
    system = dspex.ChatAdapter().format(Describe, [], {})[0]["content"]
    assert "1. `photo` (Image): \n2. `others` (list[Image]):\n" in system


def test_a_url_stays_a_url_and_a_data_uri_stays_as_given() -> None:
    data = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    assert dspex.Image(URL).url == URL
    assert dspex.Image({"url": data}).url == data
    assert repr(dspex.Image(data)) == "Image(url=data:image/gif;base64,<IMAGE_BASE_64_ENCODED(20)>)"


def test_from_path_reads_a_local_file_as_a_data_uri(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(PIXEL_PNG)
    image = dspex.Image.from_path(path)
    assert image.url.startswith("data:image/png;base64,iVBORw0KGgo")
    with pytest.warns(DeprecationWarning, match="from_path"):
        assert dspex.Image.from_file(str(path)) == image


def test_a_path_is_never_read_by_the_constructor_or_by_validation(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(PIXEL_PNG)
    with pytest.raises(ValueError, match=r"Image\.from_path"):
        dspex.Image(str(path))
    with pytest.raises(ValueError, match=r"Image\.from_path"):
        dspex.Image.model_validate({"url": str(path)})


def test_validation_never_downloads() -> None:
    with pytest.raises(TypeError, match="from_url"):
        dspex.Image.model_validate({"url": URL, "download": True})


def test_a_file_over_the_cap_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(dspex.UserError, match="over dspex's limit"):
        dspex.Image.from_path(path)
    with pytest.raises(dspex.UserError, match="File not found"):
        dspex.Image.from_path(tmp_path / "missing.png")


def test_download_is_deprecated_and_from_url_requires_http() -> None:
    with pytest.raises(dspex.UserError, match="HTTP"):
        dspex.Image.from_url("file:///etc/passwd")
    with pytest.warns(DeprecationWarning, match="from_url"):
        assert dspex.Image(URL, download=False).url == URL


def test_pil_images_and_bytes_become_png_data_uris() -> None:
    pil = pytest.importorskip("PIL.Image")
    image = pil.new("RGB", (1, 1))
    assert dspex.Image(image).url.startswith("data:image/png;base64,")
    assert dspex.Image(PIXEL_PNG).url.startswith("data:image/png;base64,")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert dspex.Image.from_PIL(image).url.startswith("data:image/png;base64,")
