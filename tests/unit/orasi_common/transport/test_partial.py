"""A partial success on the wire (``transport.partial``), both directions, and through the
exporter helper and the OTLP/gRPC workers' hand-off. Expected answers written from the OTLP
specification's ``partial_success`` fields and the OTAP message the module docstring draws."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from orasi_common.errors import MalformedData, PartialSuccess
from orasi_common.pdata import SPECS, Signal
from orasi_common.pipeline.component import Kind
from orasi_common.pipeline.exporter_helper import ExporterConfig, ExporterHelper
from orasi_common.receivers.otlp import handoff
from orasi_common.telemetry.metrics import Metrics
from orasi_common.transport import partial
from orasi_common.transport.otap import protocol
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2

from ...builders import batch_with
from ...doubles import make_settings, sample

REJECTED = {
    Signal.TRACES: "rejectedSpans",
    Signal.LOGS: "rejectedLogRecords",
    Signal.METRICS: "rejectedDataPoints",
}


@pytest.mark.parametrize("signal", list(Signal))
def test_otlp_response_names_the_signals_counter_and_comes_back(signal: Signal) -> None:
    outcome = PartialSuccess("spans.checkout: attributes.http.route: required key missing", 3)
    wire = partial.otlp_response(signal, outcome).SerializeToString()
    answer = SPECS[signal].response_type.FromString(wire)
    assert json_format.MessageToDict(answer) == {
        "partialSuccess": {REJECTED[signal]: "3", "errorMessage": outcome.message}
    }
    back = partial.of_otlp_response(signal, answer)
    assert back is not None and (back.rejected, back.message) == (3, outcome.message)


def test_an_otlp_response_without_rejected_items_is_a_full_success() -> None:
    response: Any = SPECS[Signal.LOGS].response_type()
    assert partial.of_otlp_response(Signal.LOGS, response) is None
    response.partial_success.error_message = "a warning only"
    assert partial.of_otlp_response(Signal.LOGS, response) is None


def test_otap_batch_status_is_ok_with_the_count_in_its_message() -> None:
    outcome = PartialSuccess("logs.api: attributes.user: key not allowed\nand more", 2)
    answer = otap_pb2.BatchStatus.FromString(protocol.batch_status(7, outcome).SerializeToString())
    assert (answer.batch_id, answer.status_code) == (7, otap_pb2.OK)
    assert (
        answer.status_message
        == "partial success: 2 rejected: logs.api: attributes.user: key not allowed\nand more"
    )
    back = protocol.error_of(answer)
    assert isinstance(back, PartialSuccess) and (back.rejected, back.message) == (2, outcome.message)
    assert (
        protocol.error_of(otap_pb2.BatchStatus(batch_id=1, status_code=otap_pb2.OK, status_message="fine"))
        is None
    )
    assert protocol.error_of(protocol.batch_status(1)) is None


def test_the_workers_hand_off_keeps_the_count() -> None:
    back = handoff.decode_error(handoff.encode_error(PartialSuccess("why", 5)))
    assert isinstance(back, PartialSuccess) and (back.rejected, back.message) == (5, "why")


def _config(queue: bool) -> ExporterConfig:
    return ExporterConfig.model_validate(
        {
            "retry_on_failure": {"initial_interval": 0.001},
            "sending_queue": {"enabled": queue, "num_consumers": 1},
        }
    )


@pytest.mark.parametrize("queue", [False, True])
async def test_the_exporter_helper_counts_a_peers_partial_success_and_passes_it_back(
    metrics: Metrics, queue: bool
) -> None:
    sends: list[int] = []

    async def send(batch: object) -> None:
        sends.append(1)
        raise PartialSuccess("spans.checkout: name: does not match '^GET '", 2)

    helper = ExporterHelper(make_settings("otlp", Kind.EXPORTER, metrics), _config(queue), send)
    await helper.start()
    if queue:  # acknowledged when queued: the sender cannot learn of it, the rejection is counted
        await helper.consume(batch_with(Signal.TRACES, 5))
        await helper.shutdown()
    else:
        with pytest.raises(PartialSuccess) as raised:
            await helper.consume(batch_with(Signal.TRACES, 5))
        assert (raised.value.rejected, raised.value.message) == (
            2,
            "spans.checkout: name: does not match '^GET '",
        )
        await helper.shutdown()
    assert sends == [1], "never retried"
    labels = {"signal": "traces", "exporter": "otlp"}
    assert sample(metrics, "orasi_exporter_sent_items_total", **labels) == 3
    assert sample(metrics, "orasi_exporter_send_failed_items_total", reason="partial_success", **labels) == 2


def test_combined_outcomes_sum_their_rejections() -> None:
    combined = PartialSuccess.combine([PartialSuccess("first", 1), PartialSuccess("second", 4)])
    assert (combined.rejected, combined.message) == (5, "first")
    assert not isinstance(combined, MalformedData) and not combined.retryable
