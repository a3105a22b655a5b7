"""The pure parts of the `etcd` resolver: its configuration, reading a record, the membership."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from orasi_common.control.registration import Endpoints, MalformedRecord, encode, key_of, make_record
from orasi_common.control.registry import parse_endpoint
from orasi_common.discovery.etcd import (
    EtcdDefaults,
    EtcdResolverConfig,
    EtcdWatch,
    Membership,
    record_endpoint,
)
from orasi_common.discovery.resolvers import ResolverConfig
from orasi_common.extensions.etcd.config import Config as EtcdExtensionConfig


def value(otlp_grpc: str | None = "10.0.0.1:4317", otap: str | None = None) -> bytes:
    endpoints = Endpoints(otlp_grpc=otlp_grpc, otap=otap)
    return encode(make_record(endpoints, region="r", zone="", version="0.1.0", started_at=datetime.now(UTC)))


def key(instance: str, kind: str = "bridge") -> bytes:
    return key_of("r", kind, instance).encode()


def test_a_resolver_is_exactly_one_of_static_dns_and_etcd() -> None:
    config = ResolverConfig.model_validate({"etcd": {"service": "bridge", "region": "us-east-1"}})
    assert config.kind == "etcd" and config.etcd is not None and config.etcd.endpoints is None
    with pytest.raises(ValidationError, match="exactly one of static, dns and etcd"):
        ResolverConfig.model_validate({"etcd": {"service": "bridge"}, "static": {"endpoints": ["a:1"]}})
    with pytest.raises(ValidationError, match="exactly one"):
        ResolverConfig.model_validate({})


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("service", "collector", "Input should be 'agent', 'gateway' or 'bridge'"),
        ("region", "us/east", "region must be a non-empty name without '/'"),
        ("endpoints", ["https://127.0.0.1:2379"], "TLS is not supported yet"),
        ("endpoints", ["http://127.0.0.1:99999"], "bad port"),
        ("endpoints", [], "at least 1 item"),
        ("protocol", "otlp_http", "Input should be 'otlp_grpc' or 'otap'"),
        ("unknown", 1, "Extra inputs are not permitted"),
    ],
)
def test_etcd_resolver_config_refuses(field: str, bad: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EtcdResolverConfig.model_validate({"service": "bridge", field: bad})


def test_region_and_endpoints_come_from_the_extension_when_unset() -> None:
    config = EtcdResolverConfig(service="bridge")
    with pytest.raises(
        ValueError, match=r"set etcd\.region and etcd\.endpoints, or start the etcd extension"
    ):
        EtcdWatch(config, "otlp_grpc", lambda _: None, name="lb/primary")
    defaults = EtcdDefaults(["http://127.0.0.1:23790", "127.0.0.2:23791"], "eu-west-1")
    watch = EtcdWatch(config, "otlp_grpc", lambda _: None, name="lb/primary", defaults=defaults)
    assert watch.prefix == b"/orasi/eu-west-1/services/bridge/"
    assert [parse_endpoint(url) for url in watch._targets] == [("127.0.0.1", 23790), ("127.0.0.2", 23791)]
    own = EtcdResolverConfig(service="gateway", region="us-east-1", endpoints=["http://h:1"])
    watch = EtcdWatch(own, "otlp_grpc", lambda _: None, name="x", defaults=defaults)
    assert watch.prefix == b"/orasi/us-east-1/services/gateway/" and watch._targets == ["http://h:1"]


def test_record_endpoint_picks_the_protocols_endpoint() -> None:
    both = value("10.0.0.1:4317", "10.0.0.1:4417")
    assert record_endpoint(key("b1"), both, "bridge", "otlp_grpc") == "10.0.0.1:4317"
    assert record_endpoint(key("b1"), both, "bridge", "otap") == "10.0.0.1:4417"
    assert record_endpoint(key("b1"), value(otap=None), "bridge", "otap") is None


@pytest.mark.parametrize(
    ("k", "v"),
    [
        (key("b1"), b"{not json"),
        (key("b1"), b'{"endpoints": {}}'),  # required keys missing
        (key("b1"), value().replace(b"10.0.0.1:4317", b"10.0.0.1")),  # an endpoint without a port
        (key("b1") + b"/deeper", value()),
        (key("g1", kind="gateway"), value()),  # another kind's key under the wrong prefix
    ],
    # the records hold their start time: named ids keep the test ids equal between xdist workers
    ids=["not-json", "keys-missing", "endpoint-without-port", "deeper-key", "other-kinds-key"],
)
def test_record_endpoint_refuses_what_is_not_a_record(k: bytes, v: bytes) -> None:
    with pytest.raises(MalformedRecord):
        record_endpoint(k, v, "bridge", "otlp_grpc")


def test_membership_follows_puts_and_deletes_and_reports_only_changes() -> None:
    m = Membership("bridge", "otlp_grpc")
    assert m.put(key("b1"), value("10.0.0.1:4317"), 5) is True
    assert m.put(key("b2"), value("10.0.0.2:4317"), 6) is True
    assert m.put(key("b2"), value("10.0.0.2:4317"), 7) is False  # re-registered, same endpoint
    assert m.put(key("b3"), value("10.0.0.1:4317"), 8) is False  # same address as b1
    assert m.endpoints() == ["10.0.0.1:4317", "10.0.0.2:4317"]
    assert m.delete(key("b1")) is False  # b3 still offers the address
    assert m.delete(key("b3")) is True
    assert m.delete(key("missing")) is False
    assert m.endpoints() == ["10.0.0.2:4317"]


def test_membership_skips_and_counts_malformed_records_once_per_revision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "orasi.discovery")
    m = Membership("bridge", "otlp_grpc")
    m.put(key("b1"), value("10.0.0.1:4317"), 5)
    assert m.put(key("b1"), b"garbage", 6) is True  # turned malformed: it leaves
    assert m.endpoints() == [] and m.malformed == 1
    assert m.replace([(key("b1"), b"garbage", 6)]) is False  # a resync reads the same revision
    assert m.malformed == 1
    m.put(key("b1"), b"garbage again", 7)
    assert m.malformed == 2
    assert [r.getMessage() for r in caplog.records] == ["Skipped a malformed registration record."] * 2


def test_membership_replace_drops_what_is_no_longer_listed() -> None:
    m = Membership("bridge", "otap")
    m.put(key("b1"), value(otap="10.0.0.1:4417"), 5)
    m.put(key("b2"), value(otap="10.0.0.2:4417"), 6)
    changed = m.replace([(key("b2"), value(otap="10.0.0.2:4417"), 6), (key("b3"), value(otap=None), 9)])
    assert changed is True
    assert m.endpoints() == ["10.0.0.2:4417"]
    assert m.replace([(key("b2"), value(otap="10.0.0.2:4417"), 6)]) is False


def test_the_defaults_come_from_an_etcd_extension_that_uses_etcd() -> None:
    registering = EtcdExtensionConfig(endpoints=["http://10.0.0.5:2379"], region="eu-west-1")
    assert EtcdDefaults.of({"other": EtcdResolverConfig(service="bridge"), "etcd": registering}) == (
        ["http://10.0.0.5:2379"],
        "eu-west-1",
    )
    assert EtcdDefaults.of({"etcd": EtcdExtensionConfig(endpoints=[])}) is None  # in-process registry
    assert EtcdDefaults.of({}) is None
