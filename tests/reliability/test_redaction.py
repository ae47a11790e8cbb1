"""A registered secret is redacted whole even when a shorter registered secret is part of it
(a URL password ``hunter2`` and a key ``hunter2-...``): the shorter one must not cut it first."""

from __future__ import annotations

from dspex._redact import redact_text, register_secret


def test_overlapping_secrets_are_redacted_whole() -> None:
    long_secret = "hunter2-SENTINEL-overlap-5f1c9a"
    for end in range(4, 15):  # every prefix registered too, in any order
        register_secret(long_secret[:end])
    register_secret(long_secret)
    text = redact_text(f"my key is {long_secret}.")
    assert "SENTINEL" not in text
    assert text == "my key is [REDACTED]."


def test_a_urls_password_is_redacted_and_the_rest_kept() -> None:
    text = "cannot reach http://bob:s3cret@mlflow.internal:5000/api (see http://host:5000/x@y)"
    assert redact_text(text) == (
        "cannot reach http://bob:[REDACTED]@mlflow.internal:5000/api (see http://host:5000/x@y)"
    )
