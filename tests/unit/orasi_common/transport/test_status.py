"""The mapping between the error tree and gRPC / HTTP status, in both directions."""

from __future__ import annotations

import email.utils

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from orasi_common import errors
from orasi_common.transport import status

CASES = [
    (errors.MalformedData("m"), grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.PayloadTooLarge("m"), grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    (errors.UnsupportedMediaType("m"), grpc.StatusCode.INVALID_ARGUMENT, 415),
    (errors.NotFound("m"), grpc.StatusCode.UNIMPLEMENTED, 404),
    (errors.MethodNotAllowed("m"), grpc.StatusCode.UNIMPLEMENTED, 405),
    (errors.PermanentError("m"), grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.Throttled("m", retry_after=2), grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.Unavailable("m", retry_after=2), grpc.StatusCode.UNAVAILABLE, 503),
    (errors.Unavailable("m"), grpc.StatusCode.UNAVAILABLE, 503),
    (errors.RetryableError("m"), grpc.StatusCode.UNAVAILABLE, 503),
    (errors.OrasiError("m"), grpc.StatusCode.INTERNAL, 500),
]
IDS = [
    f"{type(e).__name__}-{e.retry_after if isinstance(e, errors.RetryableError) else ''}" for e, _, _ in CASES
]


@pytest.mark.parametrize(("error", "code", "http"), CASES, ids=IDS)
def test_error_maps_to_grpc_code_and_http_status(
    error: errors.OrasiError, code: grpc.StatusCode, http: int
) -> None:
    assert status.grpc_code(error) is code
    assert status.http_status(error) == http


@pytest.mark.parametrize(("error", "code", "http"), CASES, ids=IDS)
def test_classification_survives_grpc(error: errors.OrasiError, code: grpc.StatusCode, http: int) -> None:
    """What a server sends for an error, an OTLP client classifies the same way (retryable or not)."""
    back = status.from_grpc(status.grpc_code(error), error.message, status.grpc_trailers(error))
    assert back.retryable is error.retryable


@pytest.mark.parametrize(("error", "code", "http"), CASES, ids=IDS)
def test_classification_survives_http(error: errors.OrasiError, code: grpc.StatusCode, http: int) -> None:
    headers = dict(status.http_headers(error))
    back = status.from_http(status.http_status(error), headers.get("retry-after"), error.message)
    assert back.retryable is error.retryable


def test_throttled_without_a_delay_stays_retryable_over_grpc() -> None:
    """RESOURCE_EXHAUSTED is retryable for OTLP clients only with RetryInfo, so a Throttled
    refusal must carry one (or map to another code) even when no delay was given."""
    error = errors.Throttled("queue full")
    back = status.from_grpc(status.grpc_code(error), error.message, status.grpc_trailers(error))
    assert back.retryable


def test_retry_info_round_trip() -> None:
    error = errors.Throttled("slow down", retry_after=2.5)
    trailers = status.grpc_trailers(error)
    assert [key for key, _ in trailers] == ["grpc-status-details-bin"]
    back = status.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", trailers)
    assert isinstance(back, errors.Throttled)
    assert back.retry_after == 2.5


def test_rpc_status_carries_code_message_and_retry_info() -> None:
    rpc = status.rpc_status(errors.Unavailable("busy", retry_after=0.25))
    assert rpc.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert rpc.message == "busy"
    info = error_details_pb2.RetryInfo()
    assert rpc.details[0].Unpack(info)
    assert info.retry_delay.ToNanoseconds() == 250_000_000


def test_no_trailers_and_no_header_without_a_delay() -> None:
    for error in (errors.MalformedData("x"), errors.Unavailable("x")):
        assert status.grpc_trailers(error) == ()
        assert status.http_headers(error) == []
        assert not status.rpc_status(error).details


@pytest.mark.parametrize(("delay", "header"), [(0.2, "1"), (1.0, "1"), (1.01, "2"), (30, "30")])
def test_retry_after_header_is_whole_seconds_rounded_up(delay: float, header: str) -> None:
    assert status.http_headers(errors.Throttled("x", retry_after=delay)) == [("retry-after", header)]


# --- client side: gRPC ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
    ],
)
def test_grpc_retryable_codes(code: grpc.StatusCode) -> None:
    error = status.from_grpc(code, "details", None)
    assert isinstance(error, errors.Unavailable)
    assert error.retry_after is None
    assert code.name in error.message and "details" in error.message


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ALREADY_EXISTS,
    ],
)
def test_grpc_permanent_codes(code: grpc.StatusCode) -> None:
    error = status.from_grpc(code, "no", None)
    assert isinstance(error, errors.PermanentError)
    assert not error.retryable


def test_resource_exhausted_is_retryable_only_with_retry_info() -> None:
    assert isinstance(
        status.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "big", None), errors.PermanentError
    )
    assert isinstance(status.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "big", ()), errors.PermanentError)
    trailers = status.grpc_trailers(errors.Throttled("x", retry_after=3))
    error = status.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", trailers)
    assert isinstance(error, errors.Throttled)
    assert error.retry_after == 3


def test_unavailable_with_retry_info_keeps_the_delay() -> None:
    trailers = status.grpc_trailers(errors.Unavailable("x", retry_after=7))
    error = status.from_grpc(grpc.StatusCode.UNAVAILABLE, "x", trailers)
    assert isinstance(error, errors.Unavailable)
    assert error.retry_after == 7


def test_other_trailers_and_details_are_ignored() -> None:
    rich = status_pb2.Status(code=8)
    rich.details.add().Pack(error_details_pb2.DebugInfo(detail="no retry info here"))
    trailers = [("x-other", "v"), ("grpc-status-details-bin", rich.SerializeToString())]
    error = status.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", trailers)
    assert isinstance(error, errors.PermanentError)


def test_undecodable_status_details_do_not_break_classification() -> None:
    """A peer's garbage in grpc-status-details-bin must not turn into an unclassified exception."""
    trailers = [("grpc-status-details-bin", b"\xff\xff\xff not a status")]
    error = status.from_grpc(grpc.StatusCode.UNAVAILABLE, "x", trailers)
    assert isinstance(error, errors.Unavailable)


# --- client side: HTTP ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (429, errors.Throttled),
        (502, errors.Unavailable),
        (503, errors.Unavailable),
        (504, errors.Unavailable),
    ],
)
def test_http_retryable_statuses(code: int, kind: type[errors.RetryableError]) -> None:
    error = status.from_http(code, "5", "busy")
    assert type(error) is kind
    assert error.retry_after == 5.0
    assert str(code) in error.message and "busy" in error.message
    assert status.from_http(code, None, "").retry_after is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 413, 415, 500, 501, 505, 302])
def test_http_permanent_statuses(code: int) -> None:
    error = status.from_http(code, "5", "nope")
    assert isinstance(error, errors.PermanentError)
    assert not error.retryable


def test_retry_after_seconds_and_dates() -> None:
    assert status.parse_retry_after("120") == 120.0
    assert status.parse_retry_after(" 3 ") == 3.0
    assert status.parse_retry_after(None) is None
    assert status.parse_retry_after("") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert status.parse_retry_after(date, now=now) == 90.0
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert status.parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", "Mon, 99 Foo 2024"])
def test_unparseable_retry_after_is_no_delay(value: str) -> None:
    assert status.parse_retry_after(value) is None


def test_http_date_retry_after_reaches_the_error() -> None:
    future = email.utils.formatdate(usegmt=True, timeval=None)
    error = status.from_http(503, future, "")
    assert isinstance(error, errors.Unavailable)
    assert error.retry_after is not None
    assert 0.0 <= error.retry_after <= 1.0


def test_a_peer_refusing_data_as_invalid_comes_back_as_malformed_data() -> None:
    """What the peer calls invalid data is MalformedData again, so an exporter isolates the items."""
    assert type(status.from_grpc(grpc.StatusCode.INVALID_ARGUMENT, "bad id", None)) is errors.MalformedData
    assert type(status.from_http(400, None, "bad id")) is errors.MalformedData
    assert type(status.from_grpc(grpc.StatusCode.PERMISSION_DENIED, "no", None)) is errors.PermanentError
    assert type(status.from_http(403, None, "no")) is errors.PermanentError
