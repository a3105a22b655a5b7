"""The otlp and otap exporters' one peer: named by `endpoint` or chosen from a resolver's list."""

from __future__ import annotations

import collections

import pytest
from pydantic import ValidationError

from orasi_common.discovery.resolvers import pick
from orasi_common.exporters.otap.config import Config as OtapConfig
from orasi_common.exporters.otap.exporter import OtapExporter
from orasi_common.exporters.otlp.config import Config as OtlpConfig
from orasi_common.exporters.otlp.exporter import OtlpGrpcExporter

PEERS = [f"10.0.0.{n}:4317" for n in range(1, 6)]


@pytest.mark.parametrize("config", [OtlpConfig, OtapConfig])
def test_a_peer_is_exactly_one_of_endpoint_and_resolver(config: type[OtlpConfig]) -> None:
    assert config.model_validate({"endpoint": "a:1"}).resolver is None
    found = config.model_validate({"resolver": {"etcd": {"service": "gateway", "region": "eu-west-1"}}})
    assert found.endpoint == "" and found.resolver is not None and found.resolver.kind == "etcd"
    with pytest.raises(ValidationError, match="endpoint\n  Field required"):
        config.model_validate({})
    with pytest.raises(ValidationError, match="set endpoint or resolver, not both"):
        config.model_validate({"endpoint": "a:1", "resolver": {"static": {"endpoints": ["b:2"]}}})


def test_each_exporter_dials_the_record_endpoint_of_its_protocol() -> None:
    assert OtlpGrpcExporter.record_endpoint == "otlp_grpc"
    assert OtapExporter.record_endpoint == "otap"


def test_pick_keeps_the_current_peer_while_it_is_listed() -> None:
    assert pick(PEERS, "10.0.0.3:4317", "me") == "10.0.0.3:4317"
    assert pick([], None, "me") is None
    assert pick([], "10.0.0.3:4317", "me") is None


def test_pick_spreads_senders_and_moves_only_the_senders_of_a_peer_that_left() -> None:
    senders = [f"agent-{n}" for n in range(2000)]
    chosen = {s: pick(PEERS, None, s) for s in senders}
    assert chosen == {s: pick(list(reversed(PEERS)), None, s) for s in senders}  # order-free
    shares = collections.Counter(chosen.values())
    assert set(shares) == set(PEERS) and min(shares.values()) > 2000 / 5 * 0.7, shares
    remaining = [p for p in PEERS if p != "10.0.0.2:4317"]
    after = {s: pick(remaining, None, s) for s in senders}
    moved = {s for s in senders if after[s] != chosen[s]}
    assert moved == {s for s in senders if chosen[s] == "10.0.0.2:4317"}
