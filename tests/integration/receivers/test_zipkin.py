"""A real Zipkin client (py_zipkin, its HTTP transport) reports spans in Zipkin v2 JSON and in
protobuf to a bridge's `zipkin` receiver; the spans land in the lake mapped as the OpenTelemetry
specification's Zipkin section says (kind, service, remote endpoint, tags, annotations, error).
"""

from __future__ import annotations

from typing import Any

import pytest
from py_zipkin import Kind
from py_zipkin.encoding import Encoding
from py_zipkin.transport import SimpleHTTPTransport
from py_zipkin.zipkin import zipkin_span

from integration.receivers.conftest import Processes, endpoint, wait_rows
from orasi_common.transport.endpoint import split_endpoint

SQL = (
    "SELECT name, kind, trace_id, span_id, parent_span_id, start_time_unix_nano, end_time_unix_nano, "
    "status_code, status_message, attributes, events, service_name FROM spans WHERE trace_id = '{}'"
)


def report(receiver: str, encoding: Encoding, service: str) -> tuple[str, str, str]:
    """A server span with a client child, sent by py_zipkin; (trace id, root id, child id)."""
    host, port = split_endpoint(receiver)
    transport = SimpleHTTPTransport(host, port)
    with zipkin_span(
        service_name=service,
        span_name="POST /pay",
        transport_handler=transport,
        sample_rate=100.0,
        encoding=encoding,
        kind=Kind.SERVER,
    ) as root:
        root.update_binary_annotations({"order.id": "42", "http.method": "POST"})
        root.add_annotation("charged")
        with zipkin_span(service_name=service, span_name="call bank", kind=Kind.CLIENT) as child:
            child.add_sa_binary_annotation(port=443, service_name="bank", host="10.1.2.3")  # remoteEndpoint
            child.update_binary_annotations({"error": "card declined"})
        attrs = root.zipkin_attrs
        return attrs.trace_id, attrs.span_id, child.zipkin_attrs.span_id


@pytest.mark.parametrize("encoding", [Encoding.V2_JSON, Encoding.V2_PROTO3], ids=["json", "protobuf"])
def test_py_zipkin_spans_land_in_the_lake(processes: Processes, encoding: Encoding) -> None:
    receiver = endpoint()
    bridge = processes.bridge_with({"zipkin": {"endpoint": receiver}}, ("traces",))
    service = f"shop-{encoding.name.lower()}"
    trace_id, root_id, child_id = report(receiver, encoding, service)
    padded = trace_id.rjust(32, "0")  # py_zipkin makes 64-bit trace ids
    found = wait_rows(bridge, SQL.format(padded), lambda rows: len(rows) == 2)
    spans: dict[str, dict[str, Any]] = {row["span_id"]: row for row in found}
    root, child = spans[root_id], spans[child_id]
    assert root["service_name"] == child["service_name"] == service
    assert (root["name"], root["kind"], root["parent_span_id"]) == ("POST /pay", "SERVER", None)
    assert root["attributes"]["order.id"] == "42"
    assert root["attributes"]["http.method"] == "POST"
    assert [event["name"] for event in root["events"]] == ["charged"]
    assert root["start_time_unix_nano"] <= root["events"][0]["time_unix_nano"] <= root["end_time_unix_nano"]
    assert root["status_code"] != "ERROR"
    assert (child["name"], child["kind"], child["parent_span_id"]) == ("call bank", "CLIENT", root_id)
    assert child["attributes"]["peer.service"] == "bank"
    assert child["attributes"]["network.peer.address"] == "10.1.2.3"
    assert child["attributes"]["network.peer.port"] == "443"
    assert (child["status_code"], child["status_message"]) == ("ERROR", "card declined")
    assert root["start_time_unix_nano"] <= child["start_time_unix_nano"] < child["end_time_unix_nano"]
    assert bridge.metric("orasi_receiver_accepted_items_total", receiver="zipkin") == 2
