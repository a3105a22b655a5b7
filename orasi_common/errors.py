"""The one error tree of Orasi.

Every failure that crosses a component boundary is one of these, classified once::

    OrasiError
    ├── PartialSuccess            accepted but ``rejected`` items: OTLP partial success / OTAP OK
    ├── PermanentError            bad data or bad request: never retried
    │   ├── MalformedData         INVALID_ARGUMENT / 400
    │   ├── PayloadTooLarge       RESOURCE_EXHAUSTED (no RetryInfo) / 413
    │   ├── UnsupportedMediaType  INVALID_ARGUMENT / 415
    │   ├── NotFound              UNIMPLEMENTED / 404
    │   ├── MethodNotAllowed      UNIMPLEMENTED / 405
    │   ├── Unauthenticated       UNAUTHENTICATED / 401 (no credential)
    │   │   └── InvalidToken      UNAUTHENTICATED / 401 (an unknown, revoked, expired or bad one)
    │   └── PermissionDenied      PERMISSION_DENIED / 403 (a credential without the right)
    └── RetryableError            try again later, optionally after ``retry_after`` seconds
        ├── Unavailable           UNAVAILABLE / 503 (+ RetryInfo / Retry-After)
        └── Throttled             RESOURCE_EXHAUSTED with RetryInfo / 429 + Retry-After

``orasi_common.transport.status`` is the one place that maps these to gRPC, HTTP and OTAP.
``PartialSuccess`` is no failure of the request: it is raised past a consumer that kept the
batch but some items, so that the answer travels back hop by hop (``transport.partial``).
Messages say what was wrong and, where it helps, how to fix it.
"""

from __future__ import annotations


class OrasiError(Exception):
    """Base of every classified Orasi error."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PartialSuccess(OrasiError):
    """The batch was accepted except ``rejected`` of its items, refused for good (never retried,
    never written); the message says why (for the schema registry: the subject, key and rule).
    Everything else of the batch is kept, as after a plain return."""

    def __init__(self, message: str, rejected: int) -> None:
        super().__init__(message)
        self.rejected = rejected

    @staticmethod
    def combine(outcomes: list[PartialSuccess]) -> PartialSuccess:
        """One outcome for the parts of one batch: their rejections summed, the first message."""
        return PartialSuccess(outcomes[0].message, sum(o.rejected for o in outcomes))


class PermanentError(OrasiError):
    """The request can never succeed as it is; retrying it would fail the same way."""


class MalformedData(PermanentError):
    """The payload could not be decoded, or decoded into something invalid."""


class PayloadTooLarge(PermanentError):
    """The payload is over a configured size limit (compressed or decompressed)."""


class UnsupportedMediaType(PermanentError):
    """The request's content type or content encoding is not one Orasi speaks."""


class NotFound(PermanentError):
    """No such endpoint."""


class MethodNotAllowed(PermanentError):
    """The endpoint exists but not for this method."""


class Unauthenticated(PermanentError):
    """The request carries no credential, or one that is unknown, revoked or malformed."""


class InvalidToken(Unauthenticated):
    """A credential was given but is unknown, revoked, expired or malformed (RFC 6750's
    ``invalid_token``, where a request without one is only asked for one)."""


class PermissionDenied(PermanentError):
    """The credential is valid but may not do this (its scope, or another tenant)."""


class RetryableError(OrasiError):
    """A transient refusal: the same request may succeed later.

    ``retry_after`` (seconds) is the delay the refusing side asks for, or None.
    """

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(RetryableError):
    """The component or its downstream cannot take data right now."""


class Throttled(RetryableError):
    """A limit (memory, queue, rate) refuses data until pressure drops."""
