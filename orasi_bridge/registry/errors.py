"""The registry's errors, each with the Confluent Schema Registry's error code and HTTP status.

OrasiError
├── PermanentError
│   └── RegistryError            {"error_code", "message"} with ``code`` and ``status``
│       ├── SubjectNotFound      40401 / 404
│       ├── VersionNotFound      40402 / 404
│       ├── SchemaNotFound       40403 / 404
│       ├── NotSoftDeleted       40405 / 404   (permanent delete before a soft one)
│       ├── Incompatible         409   / 409
│       ├── InvalidSchemaError   42201 / 422   (also a schemaType other than JSON, a bad subject)
│       ├── InvalidVersion       42202 / 422
│       ├── InvalidLevel         42203 / 422
│       ├── InvalidMode          42204 / 422
│       ├── ReadOnlyMode         42205 / 422
│       └── BodyTooLarge         413   / 413
└── RetryableError
    └── Unavailable              50301 / 503   (the store cannot be reached: writes, and
                                                reads the cache cannot answer)
"""

from __future__ import annotations

from orasi_common.errors import PermanentError, Unavailable

UNAVAILABLE_CODE = 50301


class RegistryError(PermanentError):
    code: int = 50001
    status: int = 500


class Refusal(RegistryError):
    """A refused credential, answered with its ``WWW-Authenticate`` challenge
    (``orasi_common.transport.status.challenge``)."""

    def __init__(self, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge


class Unauthorized(Refusal):
    code, status = 40101, 401


class Forbidden(Refusal):
    code, status = 40301, 403


class SubjectNotFound(RegistryError):
    code, status = 40401, 404

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' not found.")


class VersionNotFound(RegistryError):
    code, status = 40402, 404


class SchemaNotFound(RegistryError):
    code, status = 40403, 404


class NotSoftDeleted(RegistryError):
    code, status = 40405, 404


class Incompatible(RegistryError):
    code, status = 409, 409


class InvalidSchemaError(RegistryError):
    code, status = 42201, 422


class InvalidVersion(RegistryError):
    code, status = 42202, 422


class InvalidLevel(RegistryError):
    code, status = 42203, 422


class InvalidMode(RegistryError):
    code, status = 42204, 422


class ReadOnlyMode(RegistryError):
    code, status = 42205, 422


class BodyTooLarge(RegistryError):
    code, status = 413, 413


__all__ = [
    "UNAVAILABLE_CODE",
    "BodyTooLarge",
    "Forbidden",
    "Incompatible",
    "InvalidLevel",
    "InvalidMode",
    "InvalidSchemaError",
    "InvalidVersion",
    "NotSoftDeleted",
    "ReadOnlyMode",
    "RegistryError",
    "SchemaNotFound",
    "SubjectNotFound",
    "Unauthorized",
    "Unavailable",
    "VersionNotFound",
]
