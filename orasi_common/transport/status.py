"""The one mapping between Orasi's error tree and gRPC / HTTP status, both directions.

Servers turn an OrasiError into a status code plus RetryInfo / Retry-After; clients turn a
peer's status back into an OrasiError classified as the OTLP specification says (gRPC:
UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS, and
RESOURCE_EXHAUSTED with RetryInfo are retryable; HTTP: 429, 502, 503, 504 are retryable).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Sequence

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from orasi_common import errors

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Most specific class first.
_MAPPING: Sequence[tuple[type[errors.OrasiError], grpc.StatusCode, int]] = (
    (errors.PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    (errors.UnsupportedMediaType, grpc.StatusCode.INVALID_ARGUMENT, 415),
    (errors.NotFound, grpc.StatusCode.UNIMPLEMENTED, 404),
    (errors.MethodNotAllowed, grpc.StatusCode.UNIMPLEMENTED, 405),
    (errors.MalformedData, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.PermanentError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.Throttled, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.RetryableError, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.OrasiError, grpc.StatusCode.INTERNAL, 500),
)


def _lookup(error: errors.OrasiError) -> tuple[grpc.StatusCode, int]:
    for error_type, code, http in _MAPPING:
        if isinstance(error, error_type):
            return code, http
    raise AssertionError("unreachable: OrasiError is in the table")


def grpc_code(error: errors.OrasiError) -> grpc.StatusCode:
    return _lookup(error)[0]


def http_status(error: errors.OrasiError) -> int:
    return _lookup(error)[1]


# A throttling refusal always carries a delay: without RetryInfo, OTLP clients would treat
# RESOURCE_EXHAUSTED as permanent.
DEFAULT_THROTTLE_DELAY = 1.0


def retry_delay(error: errors.OrasiError) -> float | None:
    if not isinstance(error, errors.RetryableError):
        return None
    if error.retry_after is None and isinstance(error, errors.Throttled):
        return DEFAULT_THROTTLE_DELAY
    return error.retry_after


def rpc_status(error: errors.OrasiError) -> status_pb2.Status:
    """A google.rpc.Status for the error, with RetryInfo when a retry delay is known."""
    code = grpc_code(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    delay = retry_delay(error)
    if delay is not None:
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
        info.retry_delay.FromNanoseconds(int(delay * 1e9))
        status.details.add().Pack(info)
    return status


def grpc_trailers(error: errors.OrasiError) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying the rich status (RetryInfo), empty when there is none."""
    if retry_delay(error) is None:
        return ()
    return ((_STATUS_DETAILS_KEY, rpc_status(error).SerializeToString()),)


def http_headers(error: errors.OrasiError) -> list[tuple[str, str]]:
    delay = retry_delay(error)
    return [("retry-after", str(max(1, math.ceil(delay))))] if delay is not None else []


# --- client side -----------------------------------------------------------------------------

_GRPC_RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_HTTP_RETRYABLE = frozenset({429, 502, 503, 504})


def _grpc_retry_info(trailers: Sequence[tuple[str, str | bytes]] | None) -> float | None:
    for key, value in trailers or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            continue  # an unreadable detail is no reason to misclassify the failure
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


def from_grpc(
    code: grpc.StatusCode, details: str | None, trailers: Sequence[tuple[str, str | bytes]] | None
) -> errors.OrasiError:
    """Classify a peer's gRPC failure."""
    message = f"the peer answered {code.name}: {details or ''}".rstrip(": ")
    delay = _grpc_retry_info(trailers)
    if code in _GRPC_RETRYABLE:
        return errors.Unavailable(message, retry_after=delay)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None:
        return errors.Throttled(message, retry_after=delay)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return errors.MalformedData(message)
    return errors.PermanentError(message)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def from_http(status: int, retry_after: str | None, body_message: str) -> errors.OrasiError:
    """Classify a peer's HTTP failure (any status outside 2xx)."""
    message = f"the peer answered HTTP {status}: {body_message}".rstrip(": ")
    if status in _HTTP_RETRYABLE:
        delay = parse_retry_after(retry_after)
        if status == 429:
            return errors.Throttled(message, retry_after=delay)
        return errors.Unavailable(message, retry_after=delay)
    if status == 400:
        return errors.MalformedData(message)
    return errors.PermanentError(message)


__all__ = [
    "from_grpc",
    "from_http",
    "grpc_code",
    "grpc_trailers",
    "http_headers",
    "http_status",
    "parse_retry_after",
    "rpc_status",
]
