"""`orasi fleet`'s output: the table and the JSON document, written by hand from the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orasi_common.control.fleet import (
    Fleet,
    Instance,
    Malformed,
    default_endpoints,
    format_age,
    format_table,
    to_json,
)
from orasi_common.control.registration import Endpoints, make_record

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def _instance(region: str, kind: str, name: str, age: timedelta, readyz: str, **endpoints: str) -> Instance:
    record = make_record(
        Endpoints(**endpoints),
        region=region,
        zone="z1" if kind == "bridge" else "",
        version="0.1.0",
        started_at=NOW - age,
    )
    return Instance(region, kind, name, record, readyz)


FLEET = Fleet(
    [
        _instance(
            "eu-west-1",
            "bridge",
            "b-1",
            timedelta(hours=3, minutes=4, seconds=5),
            "200",
            otap="h1:4417",
            admin="h1:13133",
        ),
        _instance("us-east-1", "gateway", "gw-10", timedelta(seconds=42), "unreachable", otlp_grpc="h2:4317"),
        _instance("us-east-1", "gateway", "gw-2", timedelta(days=2, hours=5), "503", admin="h3:13133"),
    ],
    [
        Malformed(
            "/orasi/us-east-1/services/bridge/bad", "malformed registration record (value: Invalid JSON)"
        )
    ],
)


def test_table_aligns_columns_and_lists_malformed_records_after_it() -> None:
    assert format_table(FLEET, NOW).splitlines() == [
        "REGION     KIND     INSTANCE  VERSION  ZONE  AGE    READYZ       ENDPOINTS",
        "eu-west-1  bridge   b-1       0.1.0    z1    3h04m  200          otap=h1:4417 admin=h1:13133",
        "us-east-1  gateway  gw-10     0.1.0    -     42s    unreachable  otlp_grpc=h2:4317",
        "us-east-1  gateway  gw-2      0.1.0    -     2d05h  503          admin=h3:13133",
        "MALFORMED /orasi/us-east-1/services/bridge/bad: malformed registration record (value: Invalid JSON)",
    ]


def test_empty_fleet_is_the_header_alone() -> None:
    assert format_table(Fleet([], []), NOW) == "REGION  KIND  INSTANCE  VERSION  ZONE  AGE  READYZ  ENDPOINTS"


def test_json_document() -> None:
    document = to_json(FLEET, NOW)
    assert document["instances"][0] == {
        "region": "eu-west-1",
        "kind": "bridge",
        "instance": "b-1",
        "version": "0.1.0",
        "zone": "z1",
        "started_at": "2026-12-07T08:55:55Z",
        "age_seconds": 11045.0,
        "endpoints": {"otap": "h1:4417", "admin": "h1:13133"},
        "readyz": "200",
    }
    assert [item["instance"] for item in document["instances"]] == ["b-1", "gw-10", "gw-2"]
    assert document["malformed"] == [
        {
            "key": "/orasi/us-east-1/services/bridge/bad",
            "error": "malformed registration record (value: Invalid JSON)",
        }
    ]


def test_age() -> None:
    assert [format_age(s) for s in (-3, 0, 59.9, 60, 3599, 3600, 86399, 86400 + 3600)] == [
        "0s",
        "0s",
        "59s",
        "1m00s",
        "59m59s",
        "1h00m",
        "23h59m",
        "1d01h",
    ]


def test_default_endpoints_from_the_environment() -> None:
    assert default_endpoints({}) == ["http://127.0.0.1:2379"]
    assert default_endpoints({"ORASI_ETCD_ENDPOINTS": " http://a:2379, http://b:2379 ,"}) == [
        "http://a:2379",
        "http://b:2379",
    ]
