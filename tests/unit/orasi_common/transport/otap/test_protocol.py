"""OTAP's services and method paths as the otel-arrow ``arrow_service.proto`` names them, and
the BatchStatus of an accepted batch (refusals: the status table in ``test_status``)."""

from __future__ import annotations

import pytest

from orasi_common.pdata import Signal
from orasi_common.transport.otap import protocol
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2


@pytest.mark.parametrize(
    ("signal", "path"),
    [
        (Signal.TRACES, "/opentelemetry.proto.experimental.arrow.v1.ArrowTracesService/ArrowTraces"),
        (Signal.LOGS, "/opentelemetry.proto.experimental.arrow.v1.ArrowLogsService/ArrowLogs"),
        (Signal.METRICS, "/opentelemetry.proto.experimental.arrow.v1.ArrowMetricsService/ArrowMetrics"),
    ],
)
def test_method_paths_are_the_specified_ones(signal: Signal, path: str) -> None:
    assert protocol.method_path(signal) == path
    assert path.startswith(f"/{protocol.service_name(signal)}/")


def test_the_generated_services_are_the_ones_served() -> None:
    services = otap_pb2.DESCRIPTOR.services_by_name
    for signal in Signal:
        service, method = protocol.SERVICES[signal]
        assert services[service].full_name == protocol.service_name(signal)
        assert services[service].methods_by_name[method].client_streaming


def test_an_accepted_batch_is_answered_ok_under_its_id() -> None:
    answer = otap_pb2.BatchStatus.FromString(protocol.batch_status(2**40).SerializeToString())
    assert (answer.batch_id, answer.status_code, answer.status_message) == (2**40, otap_pb2.OK, "")
    assert protocol.error_of(answer) is None
