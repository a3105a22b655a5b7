"""The error tree: what is permanent, what is retryable, and what a retryable error carries."""

from __future__ import annotations

import pytest

from orasi_common import errors


@pytest.mark.parametrize(
    "error_type",
    [
        errors.PermanentError,
        errors.MalformedData,
        errors.PayloadTooLarge,
        errors.UnsupportedMediaType,
        errors.NotFound,
        errors.MethodNotAllowed,
    ],
)
def test_permanent_errors_are_not_retryable(error_type: type[errors.OrasiError]) -> None:
    error = error_type("bad")
    assert isinstance(error, errors.PermanentError)
    assert not isinstance(error, errors.RetryableError)
    assert error.retryable is False
    assert error.message == "bad"
    assert str(error) == "bad"


@pytest.mark.parametrize("error_type", [errors.RetryableError, errors.Unavailable, errors.Throttled])
def test_retryable_errors_carry_their_delay(error_type: type[errors.RetryableError]) -> None:
    error = error_type("later", retry_after=2.5)
    assert isinstance(error, errors.RetryableError)
    assert not isinstance(error, errors.PermanentError)
    assert error.retryable is True
    assert error.retry_after == 2.5
    assert error_type("later").retry_after is None


def test_every_class_is_an_orasi_error() -> None:
    for name in (
        "PermanentError",
        "MalformedData",
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "NotFound",
        "MethodNotAllowed",
        "RetryableError",
        "Unavailable",
        "Throttled",
    ):
        assert issubclass(getattr(errors, name), errors.OrasiError)
    assert errors.OrasiError("x").retryable is False
