"""OTAP's gRPC surface: a bidirectional stream per signal, one BatchStatus per batch.

Each signal has its own service (``ArrowTracesService/ArrowTraces``, ``ArrowLogsService/ArrowLogs``,
``ArrowMetricsService/ArrowMetrics``) streaming ``BatchArrowRecords`` one way and ``BatchStatus``
the other. A status code is a gRPC number; which error goes out as which code and which code
comes back as which error is ``transport.status``'s table (``otap_code``, ``from_otap``).
"""

from __future__ import annotations

from collections.abc import Mapping

from orasi_common.errors import OrasiError, PartialSuccess
from orasi_common.pdata import Signal
from orasi_common.transport import partial, status
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2

PACKAGE = "opentelemetry.proto.experimental.arrow.v1"
SERVICES: Mapping[Signal, tuple[str, str]] = {
    Signal.TRACES: ("ArrowTracesService", "ArrowTraces"),
    Signal.LOGS: ("ArrowLogsService", "ArrowLogs"),
    Signal.METRICS: ("ArrowMetricsService", "ArrowMetrics"),
}
"""Per signal: the service's name within ``PACKAGE`` and its one method."""


def service_name(signal: Signal) -> str:
    """The service's full gRPC name (``PACKAGE`` and the service)."""
    return f"{PACKAGE}.{SERVICES[signal][0]}"


def method_path(signal: Signal) -> str:
    """The path a client calls: ``/<package>.<service>/<method>``."""
    return f"/{service_name(signal)}/{SERVICES[signal][1]}"


def batch_status(batch_id: int, error: OrasiError | None = None) -> otap_pb2.BatchStatus:
    """The answer to batch ``batch_id``: OK, or the code and message of the error it was refused
    with (a partial success: OK with its message, ``transport.partial``)."""
    if error is None:
        return otap_pb2.BatchStatus(batch_id=batch_id, status_code=otap_pb2.OK)
    if isinstance(error, PartialSuccess):
        return otap_pb2.BatchStatus(
            batch_id=batch_id, status_code=otap_pb2.OK, status_message=partial.otap_message(error)
        )
    return otap_pb2.BatchStatus(
        batch_id=batch_id,
        status_code=status.otap_code(error),  # type: ignore[arg-type]
        status_message=error.message,
    )


def error_of(answer: otap_pb2.BatchStatus) -> OrasiError | None:
    """The classified error of a peer's BatchStatus: None for OK, a ``PartialSuccess`` for an OK
    that says so."""
    if answer.status_code == otap_pb2.OK:
        return partial.of_otap_message(answer.status_message)
    return status.from_otap(answer.status_code, answer.status_message)


__all__ = ["PACKAGE", "SERVICES", "batch_status", "error_of", "method_path", "service_name"]
