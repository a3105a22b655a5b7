"""The `ratelimit` extension without Redis: the bucket arithmetic (expected waits written by hand
from ``buckets``' contract), a tenant's limits merged over the default, the in-process limiter,
``Ingest`` refusing a throttled batch before its pipeline sees it, and `orasi up`'s option."""

from __future__ import annotations

from pathlib import Path

import pytest

from orasi_agent.factories import FACTORIES as AGENT
from orasi_bridge import api
from orasi_bridge.factories import FACTORIES as BRIDGE
from orasi_common.errors import Throttled
from orasi_common.extensions.ratelimit import Config, RateLimiter, RateLimitSettings
from orasi_common.extensions.ratelimit.buckets import Bucket, LocalBackend, take
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Kind
from orasi_common.pipeline.graph import resolve
from orasi_common.receivers import otlp
from orasi_common.receivers.ingest import Ingest
from orasi_common.telemetry.metrics import Metrics
from orasi_common.up import PORTS, configs

from ...builders import batch_with
from ...doubles import RecordingConsumer, make_settings, sample


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    clock = Clock()
    local = LocalBackend(clock)
    items = ("t:items", 10.0, 20.0, 5.0)  # 10/s, holds 20, costs 5
    assert [local.take([items]) for _ in range(4)] == [(0.0, -1)] * 4  # the full bucket: 20
    wait, refusing = local.take([items])
    assert refusing == 0 and wait == pytest.approx(0.5)  # 5 tokens at 10/s
    clock.now += 0.25
    assert local.take([items])[1] == 0  # refused: it took nothing, so 2.5 tokens are there
    clock.now += 0.25
    assert local.take([items]) == (0.0, -1)
    clock.now += 60  # refilled to the capacity, not past it
    assert [local.take([items])[1] for _ in range(5)] == [-1, -1, -1, -1, 0]


def test_a_request_larger_than_the_burst_passes_a_full_bucket_and_leaves_a_debt() -> None:
    buckets: dict[str, Bucket] = {}
    big = ("t:bytes", 100.0, 100.0, 250.0)
    assert take(buckets, [big], 0.0) == (0.0, -1)
    assert buckets["t:bytes"].tokens == -150.0
    wait, refusing = take(buckets, [big], 1.0)  # -50 now; it needs 100 (its cost capped at the capacity)
    assert refusing == 0 and wait == pytest.approx(1.5)
    assert take(buckets, [big], 2.5) == (0.0, -1)


def test_a_request_takes_from_all_its_buckets_or_from_none() -> None:
    buckets: dict[str, Bucket] = {}
    items, size = ("t:items", 100.0, 100.0, 10.0), ("t:bytes", 1000.0, 1000.0, 600.0)
    assert take(buckets, [items, size], 0.0) == (0.0, -1)
    wait, refusing = take(buckets, [items, size], 0.0)
    assert refusing == 1 and wait == pytest.approx(0.2)  # the bytes refuse: 600 - 400 at 1000/s
    assert buckets["t:items"].tokens == 90.0  # the items bucket gave nothing to the refused request


def test_a_tenant_entry_replaces_only_the_fields_it_sets() -> None:
    config = Config.model_validate(
        {
            "default": {"items_per_second": 100, "bytes_per_second": 1000, "concurrent_queries": 2},
            "tenants": {"acme": {"items_per_second": 5000, "bytes_per_second": None}},
        }
    )
    acme, other = config.limits("acme"), config.limits("other")
    assert (acme.items_per_second, acme.bytes_per_second, acme.concurrent_queries) == (5000, None, 2)
    assert (other.items_per_second, other.bytes_per_second, other.concurrent_queries) == (100, 1000, 2)
    assert (acme.label, other.label) == ("acme", "_default")
    with pytest.raises(ValueError, match="bogus"):
        Config.model_validate({"default": {"bogus": 1}})
    with pytest.raises(ValueError, match="redis://"):
        Config.model_validate({"redis": {"url": "localhost:6379"}})


async def test_the_local_limiter_refuses_with_the_wait_and_counts_the_refusal() -> None:
    metrics = Metrics("gateway")
    config = Config.model_validate({"default": {"items_per_second": 100, "concurrent_queries": 1}})
    clock = Clock()  # (the wall clock would make the waits depend on the machine's load)
    limiter = RateLimiter(config, "otlp", metrics, clock=clock)
    await limiter.start()
    await limiter.admit("acme", 100, 10_000)  # the burst (bytes unlimited)
    clock.now += 0.02
    with pytest.raises(Throttled, match="100 items/s") as refused:
        await limiter.admit("acme", 10, 10)
    assert refused.value.retry_after == pytest.approx(0.08)  # 10 items at 100/s, 2 refilled
    clock.now += 0.07  # the bucket holds 9 items: 1 would pass it
    with pytest.raises(Throttled) as cached:  # from the cache of refusals, until its retry time
        await limiter.admit("acme", 1, 1)
    assert cached.value.retry_after == pytest.approx(0.01)
    await limiter.admit("globex", 50, 1)  # another tenant's bucket
    clock.now += 0.015
    await limiter.admit("acme", 10, 10)  # past its retry time: admitted
    async with limiter.query("acme"):
        with pytest.raises(Throttled, match="1 queries at once"):
            async with limiter.query("acme"):
                pass
    async with limiter.query("acme"):  # the slot was given back
        pass
    labels = {"component": "otlp", "tenant": "_default"}
    assert sample(metrics, "orasi_ratelimit_refused_total", kind="items", **labels) == 2
    assert sample(metrics, "orasi_ratelimit_refused_total", kind="queries", **labels) == 1
    assert sample(metrics, "orasi_ratelimit_backend_up", component="otlp") == 1
    await limiter.shutdown()


async def test_ingest_refuses_a_throttled_batch_before_its_pipeline_sees_it() -> None:
    metrics = Metrics("gateway")
    consumer = RecordingConsumer()
    config = Config.model_validate({"default": {"items_per_second": 10}})
    limiter = RateLimiter(config, "otlp", metrics, clock=Clock())  # (no refill however slow the run)
    ingest = Ingest(make_settings("otlp", Kind.RECEIVER, metrics), {Signal.TRACES: consumer}, None, limiter)
    await ingest.start()
    await ingest.consume(batch_with(Signal.TRACES, 8, tenant="acme"), "grpc")
    with pytest.raises(Throttled):
        await ingest.consume(batch_with(Signal.TRACES, 8, tenant="acme"), "grpc")
    assert [batch.items for batch in consumer.batches] == [8] and consumer.calls == 1
    refused = sample(metrics, "orasi_receiver_refused_items_total", receiver="otlp", transport="grpc")
    accepted = sample(metrics, "orasi_receiver_accepted_items_total", receiver="otlp", transport="grpc")
    assert (accepted, refused) == (8, 8)
    await ingest.shutdown()


def test_orasi_up_limits_only_when_given_limits() -> None:
    """`orasi up --rate-limits FILE`: the agent's OTLP receiver and the query API name the extension,
    in this process; without the option nothing is limited."""
    data = Path("/srv/orasi-data")
    plain = configs(data, PORTS, "127.0.0.1")
    assert all("ratelimit" not in (config.extensions or {}) for config in plain.values())
    limits = {"default": {"items_per_second": 1000, "concurrent_queries": 2}}
    limited = configs(data, PORTS, "127.0.0.1", rate_limits=limits)
    agent = resolve(limited["agent"], AGENT)
    bridge = resolve(limited["bridge"], BRIDGE)
    for resolved in (agent, bridge):
        extension = resolved.extensions["ratelimit"]
        assert isinstance(extension, Config) and extension.redis is None
        assert extension.limits("acme").items_per_second == 1000
    receiver = agent.receivers["otlp"]
    assert isinstance(receiver, otlp.Config) and receiver.rate_limit == RateLimitSettings(limiter="ratelimit")
    query_api = bridge.extensions["query_api"]
    assert isinstance(query_api, api.Config) and query_api.rate_limit is not None
    assert "ratelimit" not in (limited["gateway"].extensions or {})
