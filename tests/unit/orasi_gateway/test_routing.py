"""Routing by service name reads the batch's envelope by the lake's rule, in either form: an OTAP
batch is routed as its OTLP form is, and is not decoded when it goes to one owner."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_gateway.loadbalancing.routing import route

# service.name values of each resource (a repeated key: all of them, in order) → stored name
SERVICES = [
    ([AnyValue(int_value=7)], "7"),
    ([AnyValue(string_value="a"), AnyValue(string_value="b")], "b"),
    ([], "unknown_service"),
]


def _logs(services: list[list[AnyValue]]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for index, values in enumerate(services):
        resource = request.resource_logs.add()
        resource.resource.attributes.extend(KeyValue(key="service.name", value=v) for v in values)
        resource.scope_logs.add().log_records.add(time_unix_nano=index + 1)
    return request


def _forms(request: ExportLogsServiceRequest) -> tuple[Batch, Batch]:
    otlp = Batch.from_serialized(Signal.LOGS, request.SerializeToString())
    return otlp, codec.decode(Signal.LOGS, codec.encode(otlp), tenant="t", batch_id="b" * 32)


def _by_name(key: bytes) -> str:
    return key.decode()  # each service its own owner


def test_both_forms_are_routed_under_the_stored_names() -> None:
    for form in _forms(_logs([values for values, _ in SERVICES])):
        routed = route(form, _by_name)
        assert isinstance(routed, dict)
        assert {name: len(request.resource_logs) for name, request in routed.items()} == {
            stored: 1 for _, stored in SERVICES
        }


def test_an_otap_batch_for_one_owner_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    _, otap = _forms(_logs([[AnyValue(bool_value=True)], [AnyValue(string_value="true")]]))

    def decoded(*_: object) -> bytes:
        raise AssertionError("an OTAP batch was decoded to OTLP")

    monkeypatch.setattr(codec, "decode_tables", decoded)
    assert route(otap, _by_name) == "true"
