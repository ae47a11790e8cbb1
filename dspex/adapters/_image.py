"""``Image``: a signature type whose values reach the LM as image content parts (DSPy's
``dspy.Image``).

Constructing an ``Image`` never reads a file or the network: a value is an ``http(s)``/``gs``
URL or a ``data:`` URI, kept as given. Reading a local file (:meth:`Image.from_path`) or
downloading (:meth:`Image.from_url`) happens only when code asks for it, so an image value read
from data (an LM answer, a saved program, a dataset row) can never make dspex read a file or
fetch a URL. Both are capped at :data:`MAX_IMAGE_BYTES`.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import warnings
from typing import Any
from urllib.parse import urlparse

import pydantic

from dspex.adapters._types import _Type
from dspex.errors import UserError

__all__ = ["MAX_IMAGE_BYTES", "Image"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # what dspex reads or downloads for one image
_UNSET: Any = object()


class Image(_Type):
    """An image for a signature input: a URL or a base64 ``data:`` URI.

    As an input field it becomes an ``{"type": "image_url", ...}`` content part of the user
    message, with the surrounding prompt text split around it (as DSPy does); a
    ``list[Image]`` field gives one part per image.

    Args:
        source: an ``http(s)://`` or ``gs://`` URL, a ``data:`` URI, raw image bytes or a PIL
            image (both need Pillow), or ``{"url": ...}``. Also accepted as ``url=``.
        download: deprecated (as in DSPy): with ``True``, an HTTP(S) ``source`` is downloaded
            now and kept as a ``data:`` URI. Use :meth:`from_url`.
        verify: deprecated: TLS verification for ``download``.

    Raises:
        UserError: the source is not an image reference (a local path must go through
            :meth:`from_path`).

    Example:
        >>> import dspex
        >>> img = dspex.Image("https://example.com/cat.png")
        >>> img.format()
        [{'type': 'image_url', 'image_url': {'url': 'https://example.com/cat.png'}}]
    """

    url: str

    model_config = pydantic.ConfigDict(
        frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )

    def __init__(
        self,
        source: Any = None,
        /,
        *,
        download: Any = _UNSET,
        verify: Any = _UNSET,
        **data: Any,
    ) -> None:
        wants_download = download is not _UNSET
        if (wants_download or verify is not _UNSET) and source is None:
            # Never through validation: a dict from data must not start a download.
            raise TypeError(
                "`download` and `verify` are only valid with a positional image source; "
                "use Image.from_url(url, verify=...) to download a remote image."
            )
        if wants_download or verify is not _UNSET:
            warnings.warn(
                "The `download` and `verify` arguments to Image() are deprecated (as in DSPy); "
                "use Image.from_url(url, verify=...) to download a remote image, or "
                "Image.from_path(path) for a local file.",
                DeprecationWarning,
                stacklevel=2,
            )
        if source is not None and "url" in data:
            raise TypeError("Image received both `source` and `url`; provide only one image source")
        if source is not None:
            is_legacy_dict = isinstance(source, dict) and set(source) == {"url"}
            data["url"] = source["url"] if is_legacy_dict else source
        url = data.get("url")
        if download is True and isinstance(url, str) and _is_http_url(url):
            data["url"] = _download(url, verify=verify if verify is not _UNSET else True)
        elif "url" in data:
            data["url"] = encode_image(data["url"])
        super().__init__(**data)

    def format(self) -> list[dict[str, Any]]:
        return [{"type": "image_url", "image_url": {"url": encode_image(self.url)}}]

    @classmethod
    def from_url(cls, url: str, verify: bool = True, timeout: float | None = 30.0) -> Image:
        """Download an HTTP(S) image now and keep it as a ``data:`` URI.

        The fetch is the caller's decision: it reaches any host the URL names (no allowlist),
        so validate URLs that come from untrusted input first.
        """
        if not _is_http_url(url):
            raise UserError(f"Image.from_url requires an HTTP(S) URL, received: {url}")
        return cls(_download(url, verify=verify, timeout=timeout))

    @classmethod
    def from_path(cls, file_path: str | os.PathLike[str]) -> Image:
        """Read a local image file (at most :data:`MAX_IMAGE_BYTES`) as a ``data:`` URI."""
        path = os.fspath(file_path)
        if not os.path.isfile(path):
            raise UserError(f"File not found: {path}")
        size = os.path.getsize(path)
        if size > MAX_IMAGE_BYTES:
            raise UserError(
                f"Image file {path} is {size} bytes, over dspex's limit of {MAX_IMAGE_BYTES}; "
                "resize or recompress it, or pass a URL the provider fetches."
            )
        mime, _ = mimetypes.guess_type(path)
        if mime is None:
            raise UserError(f"Could not determine MIME type for file: {path}")
        with open(path, "rb") as f:
            return cls(_data_uri(mime, f.read()))

    @classmethod
    def from_file(cls, file_path: str | os.PathLike[str]) -> Image:
        """Deprecated alias of :meth:`from_path` (as in DSPy)."""
        warnings.warn(
            "Image.from_file is deprecated; use Image.from_path instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls.from_path(file_path)

    @classmethod
    def from_PIL(cls, pil_image: Any) -> Image:  # DSPy's name
        """Deprecated (as in DSPy): ``Image(pil_image)`` does the same."""
        warnings.warn(
            "Image.from_PIL is deprecated; use Image(pil_image) instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls(pil_image)

    def __str__(self) -> str:
        return str(self._serialize())

    def __repr__(self) -> str:
        if "base64" in self.url:
            encoded = len(self.url.split("base64,")[1])
            kind = self.url.split(";")[0].split("/")[-1]
            return f"Image(url=data:image/{kind};base64,<IMAGE_BASE_64_ENCODED({encoded})>)"
        return f"Image(url='{self.url}')"


def is_url(text: str) -> bool:
    """Whether ``text`` is an ``http``, ``https`` or ``gs`` URL with a host."""
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https", "gs") and bool(parsed.netloc)


def _is_http_url(text: str) -> bool:
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def encode_image(image: Any) -> str:
    """A ``data:`` URI or a remote URL for ``image``; never reads a file or the network."""
    if isinstance(image, dict) and "url" in image:
        return encode_image(image["url"])
    if isinstance(image, str):
        if image.startswith("data:") or is_url(image):
            return image
        raise UserError(
            f"Unrecognized image string: {image[:200]}. Local files must be loaded with "
            "Image.from_path()."
        )
    if isinstance(image, Image):
        return image.url
    if isinstance(image, bytes):
        return _encode_pil(_open_bytes(image))
    pil = _pil_module()
    if pil is not None and isinstance(image, pil.Image):
        return _encode_pil(image)
    raise UserError(f"Unsupported image type: {type(image)}")


def _pil_module() -> Any:
    try:
        from PIL import Image as pil_image
    except ImportError:
        return None
    return pil_image


def _open_bytes(data: bytes) -> Any:
    pil = _pil_module()
    if pil is None:
        raise ImportError("Pillow is required to process image bytes: pip install pillow")
    from PIL import UnidentifiedImageError

    try:
        return pil.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise UserError(f"Bytes could not be identified as an image: {e}") from e


def _encode_pil(image: Any) -> str:
    buffer = io.BytesIO()
    file_format = image.format or "PNG"
    image.save(buffer, format=file_format)
    mime, _ = mimetypes.guess_type(f"file.{file_format.lower()}")
    if mime is None:
        raise UserError(f"Could not determine MIME type for image format: {file_format}")
    return _data_uri(mime, buffer.getvalue())


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _download(url: str, verify: bool = True, timeout: float | None = 30.0) -> str:
    """Fetch ``url`` (at most :data:`MAX_IMAGE_BYTES`) as a ``data:`` URI."""
    import httpx

    with (
        httpx.Client(verify=verify, timeout=timeout, follow_redirects=True) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_IMAGE_BYTES:
                raise UserError(f"Image at {url} is over dspex's limit of {MAX_IMAGE_BYTES} bytes.")
            chunks.append(chunk)
        mime = response.headers.get("Content-Type", "") or mimetypes.guess_type(url)[0]
    if not mime:
        raise UserError(f"Could not determine MIME type for URL: {url}")
    return _data_uri(mime, b"".join(chunks))
