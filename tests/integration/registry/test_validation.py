"""Validation at ingest and observed schemas, through real bridge processes: two bridges whose
registries share PostgreSQL and Redis, each with its own lake; spans sent over OTLP/HTTP to one,
the schema and the mode set through the other, what was stored read back through the query API.

Every expected row below is written by hand from the schema (``SCHEMA``) and the spans sent."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from integration.bridge.otlp_data import key_values
from integration.registry.server import bridge_config
from integration.registry.test_shared_cache import PROPAGATION, Client, within
from orasi_common.testing.service_process import (
    ServiceProcess,
    metric_value,
    orasi_command,
    start_on_free_ports,
)

SCHEMA: dict[str, Any] = {
    "properties": {
        "name": {"type": "string", "pattern": "^GET "},
        "attributes": {
            "properties": {
                "http.route": {"type": "string"},
                "http.status": {"type": "integer", "enum": [200, 404]},
            },
            "required": ["http.route"],
        },
    }
}
SPANS: dict[str, dict[str, Any]] = {
    "GET ok": {"http.route": "/a", "http.status": 200},
    "GET bad type": {"http.route": "/b", "http.status": "200"},
    "GET missing": {"http.status": 404, "extra": 1.5},
    "POST enum": {"http.route": "/c", "http.status": 500},
}
VIOLATIONS: dict[str, list[str]] = {
    "GET ok": [],
    "GET bad type": ["attributes.http.status: string, not integer"],
    "GET missing": ["attributes.http.route: required key missing"],
    "POST enum": ["attributes.http.status: not one of the enum's values", "name: does not match '^GET '"],
}

# drop_attribute: attributes of the wrong type or outside the enum are removed; what is no
# attribute (a missing key, the name) is flagged instead
DROPPED_VIOLATIONS: dict[str, list[str]] = {
    "GET ok": [],
    "GET bad type": [],
    "GET missing": ["attributes.http.route: required key missing"],
    "POST enum": ["name: does not match '^GET '"],
}
DROPPED_KEYS: dict[str, list[str]] = {
    "GET ok": ["http.route", "http.status"],
    "GET bad type": ["http.route"],
    "GET missing": ["extra", "http.status"],
    "POST enum": ["http.route"],
}


def spans_request(start: int, spans: dict[str, dict[str, Any]], service: str = "checkout") -> bytes:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(key_values({"service.name": service, "host.name": "h1"}))
    scope = resource.scope_spans.add()
    for index, (name, attributes) in enumerate(spans.items()):
        span = scope.spans.add(
            trace_id=uuid.uuid4().bytes,
            span_id=(index + 1).to_bytes(8, "big"),
            name=name,
            start_time_unix_nano=start + index,
            end_time_unix_nano=start + index + 1000,
        )
        span.attributes.extend(key_values(attributes))
    return request.SerializeToString()


class Bridge:
    def __init__(self, process: ServiceProcess, config: dict[str, Any]) -> None:
        self.process = process
        self.otlp_http = "http://" + config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        self.query = "http://" + config["extensions"]["query_api"]["endpoint"]
        self.registry = self.query + "/registry"

    def send(self, body: bytes, tenant: str) -> httpx.Response:
        return httpx.post(
            self.otlp_http + "/v1/traces",
            content=body,
            headers={"content-type": "application/x-protobuf", "x-orasi-tenant": tenant},
            timeout=30,
        )

    def rows(self, sql: str, tenant: str, start: int) -> list[list[Any]]:
        answer = httpx.post(
            self.query + "/api/v1/query",
            json={"sql": sql, "start": start - 10**9, "end": start + 10**9},
            headers={"x-orasi-tenant": tenant},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        rows: list[list[Any]] = answer.json()["rows"]
        return rows


@pytest.fixture
def bridges(tmp_path: Path, pg_uri: str, redis_url: str) -> Iterator[tuple[Bridge, Bridge]]:
    started: list[ServiceProcess] = []
    made: list[Bridge] = []
    try:
        for name in ("a", "b"):
            configs: list[dict[str, Any]] = []

            def make(name: str = name, configs: list[dict[str, Any]] = configs) -> ServiceProcess:
                config = bridge_config(tmp_path / name, {"store": pg_uri, "redis": redis_url})
                config["exporters"]["lake"]["flush_interval"] = 0.3
                configs.append(config)
                return ServiceProcess.from_config("bridge", config, tmp_path, label=f"bridge-{name}")

            process = start_on_free_ports(make)
            started.append(process)
            made.append(Bridge(process, configs[-1]))
        yield made[0], made[1]
    finally:
        for process in started:
            process.stop()


def now_ns() -> int:
    return time.time_ns()


def stored(bridge: Bridge, tenant: str, start: int, column: str) -> dict[str, Any]:
    rows = bridge.rows(f"SELECT name, {column} FROM spans ORDER BY name", tenant, start)
    return {name: value for name, value in rows}


@pytest.mark.parametrize("mode", ["flag", "drop_attribute"])
def test_each_mode_applies_at_ingest(bridges: tuple[Bridge, Bridge], mode: str) -> None:
    a, b = bridges
    tenant = f"t{uuid.uuid4().hex[:10]}"
    through_a = Client(a.registry, tenant)
    assert through_a.register("spans.checkout", SCHEMA).status_code == 200
    assert through_a.put("/config/spans.checkout", {"validation": mode}).json() == {"validation": mode}
    assert Client(b.registry, tenant).get("/config/spans.checkout").json()["validation"] == mode
    start = now_ns()

    answer = b.send(spans_request(start, SPANS), tenant)
    assert answer.status_code == 200, answer.text

    violations = stored(b, tenant, start, "schema_violations")
    keys = stored(b, tenant, start, "map_keys(attributes)")
    if mode == "flag":
        assert {name: sorted(v or []) for name, v in violations.items()} == VIOLATIONS
        assert {name: sorted(k) for name, k in keys.items()} == {
            name: sorted(attributes) for name, attributes in SPANS.items()
        }, "flag keeps every attribute"
        assert metric_value(b.process.admin_url, "orasi_schema_violations_total", action="flag") == 4
        return
    assert {name: sorted(v or []) for name, v in violations.items()} == DROPPED_VIOLATIONS
    assert {name: sorted(k) for name, k in keys.items()} == DROPPED_KEYS
    admin = b.process.admin_url
    labels = {"signal": "traces", "service": "checkout"}
    assert metric_value(admin, "orasi_schema_violations_total", action="drop_attribute", **labels) == 2
    assert metric_value(admin, "orasi_schema_violations_total", action="flag", **labels) == 2


def test_a_new_version_applies_to_ingest_within_a_second(bridges: tuple[Bridge, Bridge]) -> None:
    a, b = bridges
    tenant = f"t{uuid.uuid4().hex[:10]}"
    through_a = Client(a.registry, tenant)
    assert through_a.register("spans.checkout", SCHEMA).status_code == 200
    assert (
        through_a.put("/config/spans.checkout", {"validation": "flag", "compatibility": "NONE"}).status_code
        == 200
    )
    first = now_ns()
    assert b.send(spans_request(first, {"GET bad type": SPANS["GET bad type"]}), tenant).status_code == 200
    assert stored(b, tenant, first, "schema_violations") == {"GET bad type": VIOLATIONS["GET bad type"]}

    relaxed = json.loads(json.dumps(SCHEMA))
    relaxed["properties"]["attributes"]["properties"]["http.status"] = {"type": ["integer", "string"]}
    registered = time.monotonic()
    assert through_a.register("spans.checkout", relaxed).status_code == 200, "NONE: any change"
    # The promise is a bound in time: the batch is sent once it has passed, not when b says so.
    time.sleep(max(0.0, registered + PROPAGATION - time.monotonic()))
    second = now_ns()
    assert b.send(spans_request(second, {"GET bad type": SPANS["GET bad type"]}), tenant).status_code == 200
    assert stored(b, tenant, second, "schema_violations") == {"GET bad type": None}


def test_observed_keys_and_types_and_the_schema_the_cli_makes_of_them(
    bridges: tuple[Bridge, Bridge], tmp_path: Path
) -> None:
    a, b = bridges
    tenant = f"t{uuid.uuid4().hex[:10]}"
    start = now_ns()
    assert b.send(spans_request(start, SPANS), tenant).status_code == 200
    # and a second type for one key, from another batch
    assert b.send(spans_request(start + 10, {"GET x": {"extra": "text"}}), tenant).status_code == 200
    expected = {
        "subject": "spans.checkout",
        "attributes": {
            "extra": ["number", "string"],
            "http.route": ["string"],
            "http.status": ["integer", "string"],
        },
        "resource_attributes": {"host.name": ["string"], "service.name": ["string"]},
    }
    through_a = Client(a.registry, tenant)  # the store is shared: any bridge answers
    within(10, lambda: through_a.get("/observed/spans.checkout").json() == expected)

    made = subprocess.run(
        [
            *orasi_command(),
            "schema",
            "observe",
            "spans.checkout",
            "--as-schema",
            "--url",
            a.query,
            "--tenant",
            tenant,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    contract = json.loads(made.stdout)
    assert contract["properties"]["attributes"]["properties"] == {
        "extra": {"type": ["number", "string"]},
        "http.route": {"type": "string"},
        "http.status": {"type": ["integer", "string"]},
    }
    assert through_a.register("spans.checkout", contract).status_code == 200, "the contract is in the subset"
    # and what was sent conforms to it
    changed = time.monotonic()
    assert through_a.put("/config/spans.checkout", {"validation": "flag"}).status_code == 200
    time.sleep(max(0.0, changed + PROPAGATION - time.monotonic()))  # b uses it within the bound
    again = now_ns()
    assert b.send(spans_request(again, SPANS), tenant).status_code == 200
    assert stored(b, tenant, again, "schema_violations") == dict.fromkeys(SPANS)
