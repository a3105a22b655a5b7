"""The registration record format: keys, encoding, and what a reader refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from orasi_common.control.registration import (
    Endpoints,
    Key,
    MalformedRecord,
    Record,
    decode,
    encode,
    key_of,
    make_record,
    parse_key,
    prefix,
)
from orasi_common.errors import MalformedData

STARTED = datetime(2026, 12, 7, 1, 2, 3, 456000, tzinfo=UTC)


def _record() -> Record:
    endpoints = Endpoints(otlp_grpc="10.0.0.7:4317", otap="10.0.0.7:4417", admin="10.0.0.7:13134")
    return make_record(endpoints, region="us-east-1", zone="us-east-1a", version="0.1.0", started_at=STARTED)


def test_keys_and_prefixes() -> None:
    assert key_of("us-east-1", "bridge", "host-12") == "/orasi/us-east-1/services/bridge/host-12"
    assert prefix("us-east-1", "bridge") == "/orasi/us-east-1/services/bridge/"
    assert prefix("eu-west-1") == "/orasi/eu-west-1/services/"
    assert key_of("r", "gateway", "i").startswith(prefix("r", "gateway"))
    assert not key_of("r", "gateway2", "i").startswith(prefix("r", "gateway"))
    assert parse_key(b"/orasi/us-east-1/services/bridge/host-12") == Key("us-east-1", "bridge", "host-12")


@pytest.mark.parametrize(
    "bad", [("", "bridge", "i"), ("r", "a/b", "i"), ("r", "bridge", ""), ("r", "bridge", "x/y")]
)
def test_key_segments_are_names_without_slashes(bad: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError, match="without '/'"):
        key_of(*bad)


@pytest.mark.parametrize(
    "key",
    [
        "/orasi/r/services/bridge",
        "/orasi/r/services/bridge/i/extra",
        "/other/r/services/bridge/i",
        "/orasi/r/leader/bridge/i",
        "/orasi//services/bridge/i",
        "orasi/r/services/bridge/i/",
    ],
)
def test_parse_key_refuses_other_keys(key: str) -> None:
    with pytest.raises(MalformedRecord, match="not a registration key"):
        parse_key(key)


def test_encode_writes_exactly_the_documented_json() -> None:
    assert json.loads(encode(_record())) == {
        "endpoints": {
            "otlp_grpc": "10.0.0.7:4317",
            "otlp_http": None,
            "otap": "10.0.0.7:4417",
            "query_http": None,
            "query_grpc": None,
            "admin": "10.0.0.7:13134",
        },
        "protocols": ["otap", "otlp_grpc"],
        "region": "us-east-1",
        "zone": "us-east-1a",
        "version": "0.1.0",
        "started_at": "2026-12-07T01:02:03.456000Z",
    }


def test_decode_round_trips_and_normalises_time_to_utc() -> None:
    assert decode(encode(_record())) == _record()
    data = json.loads(encode(_record()))
    data["started_at"] = "2026-12-07T03:02:03.456+02:00"
    decoded = decode(json.dumps(data).encode())
    assert decoded.started_at == STARTED and decoded.started_at.tzinfo == UTC


def test_decode_ignores_unknown_keys_of_newer_writers() -> None:
    data = json.loads(encode(_record()))
    data["weight"] = 3
    data["endpoints"]["otlp_arrow_v2"] = "10.0.0.7:5000"
    assert decode(json.dumps(data)) == _record()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not json", "value: Invalid JSON"),
        (b"\xff\xfe", "value: Invalid JSON"),
        (b"[]", "value: Input should be an object"),
        (b"null", "value: Input should be an object"),
        (b"{}", "endpoints: Field required"),
    ],
)
def test_decode_refuses_what_is_not_a_record(value: bytes, says: str) -> None:
    with pytest.raises(MalformedRecord, match=says):
        decode(value)


@pytest.mark.parametrize(
    ("path", "bad", "says"),
    [
        (("endpoints", "otap"), "10.0.0.7", "endpoints.otap: Value error, an endpoint is host:port"),
        (("endpoints", "admin"), "http://h:1/x", "endpoints.admin: Value error, an endpoint is host:port"),
        (("endpoints", "otlp_grpc"), "h:70000", "endpoints.otlp_grpc: Value error"),
        (("protocols",), "otap", "protocols: Input should be a valid"),
        (("region",), "", "region: Value error"),
        (
            ("started_at",),
            "2026-12-07T01:02:03",
            "started_at: Value error, started_at must carry",
        ),
        (("version",), 7, "version: Input should be a valid string"),
    ],
)
def test_decode_names_the_bad_field(path: tuple[str, ...], bad: object, says: str) -> None:
    data = json.loads(encode(_record()))
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = bad
    with pytest.raises(MalformedRecord, match=says) as caught:
        decode(json.dumps(data).encode())
    assert isinstance(caught.value, MalformedData)


def test_protocols_follow_the_endpoints() -> None:
    bridge = Endpoints(otap="h:4517", query_http="h:8080", query_grpc="h:8815", admin="h:13135")
    assert make_record(bridge, region="r", zone="", version="v", started_at=STARTED).protocols == ("otap",)
    assert make_record(Endpoints(), region="r", zone="", version="v", started_at=STARTED).protocols == ()
