"""The one mapping between Orasi's error tree and gRPC, HTTP and OTAP statuses, both directions.

Servers turn an OrasiError into a status plus RetryInfo / Retry-After; clients turn a peer's
status back into an OrasiError. OTAP's ``BatchStatus`` codes are gRPC's numbers::

    error                 gRPC                 HTTP    OTAP               comes back (gRPC / HTTP / OTAP) as
    MalformedData         INVALID_ARGUMENT     400     INVALID_ARGUMENT   = / = / =
    PayloadTooLarge       RESOURCE_EXHAUSTED   413     INVALID_ARGUMENT   = / = / MalformedData
    UnsupportedMediaType  INVALID_ARGUMENT     415     INVALID_ARGUMENT   MalformedData / = / MalformedData
    NotFound              UNIMPLEMENTED        404     INTERNAL           = / = / PermanentError
    MethodNotAllowed      UNIMPLEMENTED        405     INTERNAL           NotFound / = / PermanentError
    Unauthenticated       UNAUTHENTICATED      401     UNAUTHENTICATED    = / = / =
    PermissionDenied      PERMISSION_DENIED    403     PERMISSION_DENIED  = / = / =
    PermanentError        INVALID_ARGUMENT     400     INVALID_ARGUMENT   MalformedData (all three)
    Throttled             RESOURCE_EXHAUSTED + 429 +   RESOURCE_EXHAUSTED = / = / =
    Unavailable           UNAVAILABLE (+)      503 (+) UNAVAILABLE        = / = / =
    RetryableError        UNAVAILABLE (+)      503 (+) UNAVAILABLE        Unavailable (all three)
    OrasiError            INTERNAL             500     INTERNAL           PermanentError (all three)

``=`` is the same class; ``+`` means with RetryInfo / Retry-After (1 s when a Throttled error
names no delay), ``(+)`` with them when the error names a delay. The delay comes back over gRPC
and HTTP (HTTP rounds it up to whole seconds), never over OTAP (below).

Over HTTP, 401 and 403 carry the bearer challenge of RFC 6750 §3 (``challenge``)::

    Unauthenticated (no token)   WWW-Authenticate: Bearer realm="orasi"
    InvalidToken (a bad one)     WWW-Authenticate: Bearer realm="orasi", error="invalid_token"
    PermissionDenied             WWW-Authenticate: Bearer realm="orasi", error="insufficient_scope"

Coming back, a peer's status is classified as the OTLP specification says: gRPC UNAVAILABLE,
CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS (Unavailable) and
RESOURCE_EXHAUSTED with RetryInfo (Throttled) are retryable, HTTP 429 (Throttled) and 502, 503,
504 (Unavailable) too, with the delay the peer asked for. INVALID_ARGUMENT / 400 is
MalformedData (an exporter then isolates the refused items); RESOURCE_EXHAUSTED without RetryInfo
is PayloadTooLarge, as 413 is; the other statuses of the table come back as their class, and
anything else as a PermanentError.

OTAP codes are classified as gRPC's, with one difference the protocol makes: a BatchStatus has
no room for RetryInfo, so no retry delay crosses OTAP, and OTAP's RESOURCE_EXHAUSTED is
retryable on its own (the OTAP specification lists it as "server temporarily overloaded").
That is why a payload over a limit goes out on OTAP as INVALID_ARGUMENT (never retried as it
is; Orasi's exporter sends the halves), and why errors without an OTAP code of their own go out
as INTERNAL (permanent, not about the data).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from orasi_common import errors

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

_C = grpc.StatusCode
# error class → (gRPC code, HTTP status, OTAP code); most specific class first.
_MAPPING: Sequence[tuple[type[errors.OrasiError], grpc.StatusCode, int, grpc.StatusCode]] = (
    (errors.MalformedData, _C.INVALID_ARGUMENT, 400, _C.INVALID_ARGUMENT),
    (errors.PayloadTooLarge, _C.RESOURCE_EXHAUSTED, 413, _C.INVALID_ARGUMENT),
    (errors.UnsupportedMediaType, _C.INVALID_ARGUMENT, 415, _C.INVALID_ARGUMENT),
    (errors.NotFound, _C.UNIMPLEMENTED, 404, _C.INTERNAL),
    (errors.MethodNotAllowed, _C.UNIMPLEMENTED, 405, _C.INTERNAL),
    (errors.Unauthenticated, _C.UNAUTHENTICATED, 401, _C.UNAUTHENTICATED),
    (errors.PermissionDenied, _C.PERMISSION_DENIED, 403, _C.PERMISSION_DENIED),
    (errors.PermanentError, _C.INVALID_ARGUMENT, 400, _C.INVALID_ARGUMENT),
    (errors.Throttled, _C.RESOURCE_EXHAUSTED, 429, _C.RESOURCE_EXHAUSTED),
    (errors.Unavailable, _C.UNAVAILABLE, 503, _C.UNAVAILABLE),
    (errors.RetryableError, _C.UNAVAILABLE, 503, _C.UNAVAILABLE),
    (errors.OrasiError, _C.INTERNAL, 500, _C.INTERNAL),
)


def _lookup(error: errors.OrasiError) -> tuple[grpc.StatusCode, int, grpc.StatusCode]:
    for error_type, code, http, otap in _MAPPING:
        if isinstance(error, error_type):
            return code, http, otap
    raise AssertionError("unreachable: OrasiError is in the table")


def grpc_code(error: errors.OrasiError) -> grpc.StatusCode:
    return _lookup(error)[0]


def http_status(error: errors.OrasiError) -> int:
    return _lookup(error)[1]


def otap_code(error: errors.OrasiError) -> int:
    """The ``BatchStatus.status_code`` of a batch refused with ``error`` (a gRPC number)."""
    return int(_lookup(error)[2].value[0])


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


REALM = "orasi"


def challenge(error: errors.OrasiError) -> str | None:
    """The ``WWW-Authenticate`` value of a refused credential (None for other errors)."""
    if isinstance(error, errors.InvalidToken):
        return f'Bearer realm="{REALM}", error="invalid_token"'
    if isinstance(error, errors.Unauthenticated):
        return f'Bearer realm="{REALM}"'
    if isinstance(error, errors.PermissionDenied):
        return f'Bearer realm="{REALM}", error="insufficient_scope"'
    return None


def http_headers(error: errors.OrasiError) -> list[tuple[str, str]]:
    """The headers an HTTP answer of ``error`` carries: Retry-After, WWW-Authenticate."""
    found = []
    delay = retry_delay(error)
    if delay is not None:
        found.append(("retry-after", str(max(1, math.ceil(delay)))))
    refused = challenge(error)
    if refused is not None:
        found.append(("www-authenticate", refused))
    return found


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
_FROM_GRPC: Mapping[grpc.StatusCode, type[errors.PermanentError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.MalformedData,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.PayloadTooLarge,  # without RetryInfo
    grpc.StatusCode.UNIMPLEMENTED: errors.NotFound,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}
_FROM_HTTP: Mapping[int, type[errors.OrasiError]] = {
    400: errors.MalformedData,
    401: errors.Unauthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    429: errors.Throttled,
    502: errors.Unavailable,
    503: errors.Unavailable,
    504: errors.Unavailable,
}
_GRPC_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


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


def _classify(code: grpc.StatusCode, message: str, delay: float | None, otap: bool) -> errors.OrasiError:
    if code in _GRPC_RETRYABLE:
        return errors.Unavailable(message, retry_after=delay)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and (delay is not None or otap):
        return errors.Throttled(message, retry_after=delay)
    return _FROM_GRPC.get(code, errors.PermanentError)(message)


def from_grpc(
    code: grpc.StatusCode, details: str | None, trailers: Sequence[tuple[str, str | bytes]] | None
) -> errors.OrasiError:
    """Classify a peer's gRPC failure."""
    message = f"the peer answered {code.name}: {details or ''}".rstrip(": ")
    return _classify(code, message, _grpc_retry_info(trailers), otap=False)


def from_otap(code: int, status_message: str) -> errors.OrasiError | None:
    """Classify a peer's ``BatchStatus`` (None for OK)."""
    if code == 0:
        return None
    known = _GRPC_BY_NUMBER.get(code)
    message = f"the peer answered {known.name if known else code}: {status_message}".rstrip(": ")
    if known is None:
        return errors.PermanentError(message)
    return _classify(known, message, None, otap=True)


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
    kind = _FROM_HTTP.get(status, errors.PermanentError)
    if issubclass(kind, errors.RetryableError):
        return kind(message, retry_after=parse_retry_after(retry_after))
    return kind(message)


__all__ = [
    "DEFAULT_THROTTLE_DELAY",
    "REALM",
    "challenge",
    "from_grpc",
    "from_http",
    "from_otap",
    "grpc_code",
    "grpc_trailers",
    "http_headers",
    "http_status",
    "otap_code",
    "parse_retry_after",
    "retry_delay",
    "rpc_status",
]
