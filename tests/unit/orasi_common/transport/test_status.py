"""The one status table (``transport.status``), both directions, for gRPC, HTTP and OTAP.

``TABLE`` is written by hand from the contract: what each error class goes out as on each
protocol, and the class (and retry delay) a client makes of that status again.
"""

from __future__ import annotations

import email.utils
import inspect
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from orasi_common import errors
from orasi_common.transport import status
from orasi_common.transport.otap import protocol
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2

E = errors
C = grpc.StatusCode
Kind = type[errors.OrasiError]


@dataclass(frozen=True)
class Row:
    error: errors.OrasiError
    grpc: grpc.StatusCode
    http: int
    otap: int
    back: tuple[Kind, Kind, Kind]
    """The class a client makes of the status again, over gRPC, HTTP and OTAP."""
    delay: float | None = None
    """The retry delay sent (RetryInfo, Retry-After) and read back over gRPC and HTTP, not OTAP."""


A = otap_pb2  # OTAP (Arrow) status codes
TABLE = [
    # error, gRPC, HTTP, OTAP, the class it comes back as over (gRPC, HTTP, OTAP), the delay sent
    Row(E.MalformedData("m"), C.INVALID_ARGUMENT, 400, A.INVALID_ARGUMENT, 3 * (E.MalformedData,)),
    Row(  # RESOURCE_EXHAUSTED without RetryInfo is permanent over gRPC, but retryable over OTAP
        E.PayloadTooLarge("m"),
        C.RESOURCE_EXHAUSTED,
        413,
        A.INVALID_ARGUMENT,
        (E.PayloadTooLarge, E.PayloadTooLarge, E.MalformedData),
    ),
    Row(
        E.UnsupportedMediaType("m"),
        C.INVALID_ARGUMENT,
        415,
        A.INVALID_ARGUMENT,
        (E.MalformedData, E.UnsupportedMediaType, E.MalformedData),
    ),
    Row(E.NotFound("m"), C.UNIMPLEMENTED, 404, A.INTERNAL, (E.NotFound, E.NotFound, E.PermanentError)),
    Row(E.Unauthenticated("m"), C.UNAUTHENTICATED, 401, A.UNAUTHENTICATED, 3 * (E.Unauthenticated,)),
    Row(E.InvalidToken("m"), C.UNAUTHENTICATED, 401, A.UNAUTHENTICATED, 3 * (E.Unauthenticated,)),
    Row(E.PermissionDenied("m"), C.PERMISSION_DENIED, 403, A.PERMISSION_DENIED, 3 * (E.PermissionDenied,)),
    Row(
        E.MethodNotAllowed("m"),
        C.UNIMPLEMENTED,
        405,
        A.INTERNAL,
        (E.NotFound, E.MethodNotAllowed, E.PermanentError),
    ),
    Row(E.PermanentError("m"), C.INVALID_ARGUMENT, 400, A.INVALID_ARGUMENT, 3 * (E.MalformedData,)),
    Row(E.Throttled("m", 2), C.RESOURCE_EXHAUSTED, 429, A.RESOURCE_EXHAUSTED, 3 * (E.Throttled,), 2),
    # RESOURCE_EXHAUSTED is retryable over gRPC only with RetryInfo: Throttled always sends a delay
    Row(E.Throttled("m"), C.RESOURCE_EXHAUSTED, 429, A.RESOURCE_EXHAUSTED, 3 * (E.Throttled,), 1),
    Row(E.Unavailable("m", 3), C.UNAVAILABLE, 503, A.UNAVAILABLE, 3 * (E.Unavailable,), 3),
    Row(E.Unavailable("m"), C.UNAVAILABLE, 503, A.UNAVAILABLE, 3 * (E.Unavailable,)),
    Row(E.RetryableError("m", 4), C.UNAVAILABLE, 503, A.UNAVAILABLE, 3 * (E.Unavailable,), 4),
    Row(E.OrasiError("m"), C.INTERNAL, 500, A.INTERNAL, 3 * (E.PermanentError,)),
]
IDS = [f"{type(row.error).__name__}-{row.delay}" for row in TABLE]


def _retry_info(trailers: tuple[tuple[str, bytes], ...]) -> float | None:
    """The RetryInfo delay in trailers, read without the code under test."""
    for key, value in trailers:
        assert key == "grpc-status-details-bin"
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.ToNanoseconds() / 1e9
    return None


def _assert_back(back: errors.OrasiError | None, row: Row, kind: Kind, delay: float | None) -> None:
    assert back is not None
    assert type(back) is kind
    assert back.retryable is row.error.retryable
    assert "m" in back.message
    if isinstance(back, errors.RetryableError):
        assert back.retry_after == delay


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_grpc_both_directions(row: Row) -> None:
    assert status.grpc_code(row.error) is row.grpc
    trailers = status.grpc_trailers(row.error)
    assert _retry_info(trailers) == row.delay
    back = status.from_grpc(row.grpc, row.error.message, trailers)
    _assert_back(back, row, row.back[0], row.delay)


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_http_both_directions(row: Row) -> None:
    assert status.http_status(row.error) == row.http
    header = dict(status.http_headers(row.error)).get("retry-after")
    assert header == (None if row.delay is None else str(int(row.delay)))
    back = status.from_http(row.http, header, row.error.message)
    _assert_back(back, row, row.back[1], row.delay)


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_otap_both_directions(row: Row) -> None:
    """Through a real BatchStatus on the wire; OTAP's codes are gRPC's numbers, and a
    BatchStatus has no room for a retry delay."""
    sent = protocol.batch_status(41, row.error).SerializeToString()
    answer = otap_pb2.BatchStatus.FromString(sent)
    assert (answer.batch_id, answer.status_code, answer.status_message) == (41, row.otap, "m")
    assert answer.status_code in otap_pb2.StatusCode.values()
    _assert_back(protocol.error_of(answer), row, row.back[2], None)


def test_http_401_and_403_carry_the_bearer_challenge() -> None:
    """RFC 6750 §3: no token → the scheme and realm; a bad one → invalid_token; 403 → insufficient_scope."""
    challenges = {
        type(row.error): dict(status.http_headers(row.error)).get("www-authenticate") for row in TABLE
    }
    assert challenges.pop(E.Unauthenticated) == 'Bearer realm="orasi"'
    assert challenges.pop(E.InvalidToken) == 'Bearer realm="orasi", error="invalid_token"'
    assert challenges.pop(E.PermissionDenied) == 'Bearer realm="orasi", error="insufficient_scope"'
    assert set(challenges.values()) == {None}


def test_the_table_covers_every_error_class() -> None:
    classes = {c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.OrasiError)}
    # a partial success is no failure status: it is an OK answer (transport.partial, test_partial)
    assert {type(row.error) for row in TABLE} == classes - {errors.PartialSuccess}


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


GRPC_CODES: dict[grpc.StatusCode, Kind] = {  # without RetryInfo
    **dict.fromkeys(
        (C.UNAVAILABLE, C.CANCELLED, C.DEADLINE_EXCEEDED, C.ABORTED, C.OUT_OF_RANGE, C.DATA_LOSS),
        E.Unavailable,
    ),
    C.RESOURCE_EXHAUSTED: E.PayloadTooLarge,
    C.INVALID_ARGUMENT: E.MalformedData,
    C.UNIMPLEMENTED: E.NotFound,
    C.UNAUTHENTICATED: E.Unauthenticated,
    C.PERMISSION_DENIED: E.PermissionDenied,
    **dict.fromkeys((C.NOT_FOUND, C.ALREADY_EXISTS, C.FAILED_PRECONDITION), E.PermanentError),
    **dict.fromkeys((C.INTERNAL, C.UNKNOWN), E.PermanentError),
}


def test_every_grpc_code_is_classified() -> None:
    assert set(GRPC_CODES) == set(grpc.StatusCode) - {C.OK}


@pytest.mark.parametrize(("code", "kind"), GRPC_CODES.items(), ids=[c.name for c in GRPC_CODES])
def test_grpc_codes(code: grpc.StatusCode, kind: Kind) -> None:
    error = status.from_grpc(code, "details", None)
    assert type(error) is kind
    assert code.name in error.message and "details" in error.message
    assert getattr(error, "retry_after", None) is None


def test_resource_exhausted_is_retryable_only_with_retry_info() -> None:
    """Without RetryInfo it is a limit the request cannot pass (gRPC's own for a message over
    its maximum size): PayloadTooLarge, as HTTP 413."""
    for trailers in (None, ()):
        error = status.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "big", trailers)
        assert type(error) is errors.PayloadTooLarge
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
    assert type(error) is errors.PayloadTooLarge


def test_undecodable_status_details_do_not_break_classification() -> None:
    """A peer's garbage in grpc-status-details-bin must not turn into an unclassified exception."""
    trailers = [("grpc-status-details-bin", b"\xff\xff\xff not a status")]
    error = status.from_grpc(grpc.StatusCode.UNAVAILABLE, "x", trailers)
    assert isinstance(error, errors.Unavailable)


# --- client side: HTTP ----------------------------------------------------------------------------


HTTP_STATUSES: dict[int, Kind] = {
    429: E.Throttled,
    **dict.fromkeys((502, 503, 504), E.Unavailable),
    400: E.MalformedData,
    404: E.NotFound,
    405: E.MethodNotAllowed,
    413: E.PayloadTooLarge,
    415: E.UnsupportedMediaType,
    401: E.Unauthenticated,
    403: E.PermissionDenied,
    **dict.fromkeys((500, 501, 505, 302), E.PermanentError),
}


@pytest.mark.parametrize(("code", "kind"), HTTP_STATUSES.items(), ids=str)
def test_http_statuses(code: int, kind: Kind) -> None:
    error = status.from_http(code, "5", "busy")
    assert type(error) is kind
    assert str(code) in error.message and "busy" in error.message
    if isinstance(error, errors.RetryableError):
        assert error.retry_after == 5.0
        assert status.from_http(code, None, "").retry_after is None  # type: ignore[attr-defined]


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
    denied = status.from_grpc(grpc.StatusCode.PERMISSION_DENIED, "no", None)
    assert type(denied) is errors.PermissionDenied and not denied.retryable
    assert type(status.from_http(403, None, "no")) is errors.PermissionDenied


# --- client side: OTAP ----------------------------------------------------------------------------

OTAP_CODES: dict[int, type[errors.OrasiError] | None] = {
    otap_pb2.OK: None,
    otap_pb2.CANCELED: errors.Unavailable,
    otap_pb2.DEADLINE_EXCEEDED: errors.Unavailable,
    otap_pb2.ABORTED: errors.Unavailable,
    otap_pb2.UNAVAILABLE: errors.Unavailable,
    otap_pb2.RESOURCE_EXHAUSTED: errors.Throttled,  # "server temporarily overloaded" (OTAP spec)
    otap_pb2.INVALID_ARGUMENT: errors.MalformedData,
    otap_pb2.PERMISSION_DENIED: errors.PermissionDenied,
    otap_pb2.UNAUTHENTICATED: errors.Unauthenticated,
    otap_pb2.INTERNAL: errors.PermanentError,
}


def test_every_otap_code_is_classified() -> None:
    assert set(OTAP_CODES) == set(otap_pb2.StatusCode.values())


@pytest.mark.parametrize(
    ("code", "kind"), OTAP_CODES.items(), ids=[otap_pb2.StatusCode.Name(c) for c in OTAP_CODES]
)
def test_otap_codes(code: int, kind: type[errors.OrasiError] | None) -> None:
    error = status.from_otap(code, "details")
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert isinstance(error, errors.OrasiError)
    assert "details" in error.message
    assert getattr(error, "retry_after", None) is None


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK], ids=str)
def test_otap_codes_classify_as_grpc_codes_but_resource_exhausted(code: grpc.StatusCode) -> None:
    """One rule for both: OTAP's codes are gRPC's numbers. The one difference: a BatchStatus
    cannot carry RetryInfo, and OTAP's RESOURCE_EXHAUSTED is retryable by itself."""
    over_otap = status.from_otap(code.value[0], "x")
    over_grpc = status.from_grpc(code, "x", None)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert (type(over_otap), type(over_grpc)) == (errors.Throttled, errors.PayloadTooLarge)
    else:
        assert type(over_otap) is type(over_grpc)


def test_an_unknown_otap_code_is_permanent() -> None:
    error = status.from_otap(99, "what")
    assert type(error) is errors.PermanentError
    assert "99" in error.message and "what" in error.message
