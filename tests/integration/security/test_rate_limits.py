"""Rate limits on the real Redis (SERVERS.md), a key prefix per test: two limiters (two replicas)
enforce one shared rate and one shared set of query slots, a crashed replica's slots age out,
refused requests are answered RESOURCE_EXHAUSTED + RetryInfo (OTLP/gRPC) and 429 + Retry-After
(OTLP/HTTP, Zipkin, the REST query API and its Jaeger routes) by real clients, and a Redis that
stops answering (a redis-server of the test's own, stopped by its pid, a closed port, or a
server that never answers) makes each limiter enforce the limits alone, never refuse."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
import redis
from google.rpc import error_details_pb2, status_pb2

from integration.flightsql.conftest import StartApi
from orasi_bridge.lake import LakeWriter
from orasi_common.errors import Throttled
from orasi_common.extensions.ratelimit import Config, RateLimiter
from orasi_common.extensions.ratelimit.redis_backend import RedisBackend
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.receivers import otlp, zipkin
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.service_process import free_port

from .test_tokens import EXPORT, spans

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted after it."""
    name = f"orasi-test:ratelimit:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def config(
    prefix: str, url: str = REDIS_URL, timeout: float = 2.0, lease: float = 0.5, **limits: Any
) -> Config:
    """Limits shared through Redis at ``url``; ``timeout``: long enough by default that a Redis
    slowed by a loaded machine is still the one asked (the outage tests set 0.2 s)."""
    return Config.model_validate(
        {
            "redis": {"url": url, "key_prefix": prefix, "timeout": timeout, "retry_interval": 0.2},
            "default": limits,
            "query_lease_seconds": lease,
        }
    )


async def started(config: Config, component: str = "otlp", metrics: Metrics | None = None) -> RateLimiter:
    limiter = RateLimiter(config, component, metrics or Metrics("gateway"), logging.getLogger("orasi.test"))
    await limiter.start()
    return limiter


def backend_up(metrics: Metrics, component: str) -> float | None:
    return metrics.registry.get_sample_value("orasi_ratelimit_backend_up", {"component": component})


async def test_two_replicas_enforce_one_shared_rate(prefix: str) -> None:
    one, two = [await started(config(prefix, items_per_second=100)) for _ in range(2)]
    admitted, refused = 0, None
    began = time.monotonic()
    for turn in range(40):  # 10 items at a time, alternately, until the shared bucket refuses
        try:
            await (one if turn % 2 else two).admit("acme", 10, 100)
            admitted += 10
        except Throttled as error:
            refused = error
            break
    refilled = 100 * (time.monotonic() - began)  # at most, on Redis's clock, while the loop ran
    # The bucket holds 100 (1 s of burst), and refills 100/s; alone, each replica's would have
    # admitted 100, together 200.
    assert refused is not None and 100 <= admitted <= 110 + refilled
    assert refused.retry_after is not None and 0 < refused.retry_after <= 0.1
    other = one if admitted // 10 % 2 == 0 else two  # the replica that was not refused asks Redis
    with pytest.raises(Throttled):
        await other.admit("acme", 10, 100)
    await one.admit("globex", 100, 100)  # tenants have buckets of their own
    await asyncio.sleep(0.15)  # the refill the refusal asked to wait for
    await other.admit("acme", 10, 100)
    ttl = redis.Redis.from_url(REDIS_URL).pttl(f"{prefix}:{{acme}}:items")
    assert 0 < ttl <= 1000  # it expires once it would be full again
    assert one.shared and two.shared
    for limiter in (one, two):
        await limiter.shutdown()


async def test_the_redis_script_holds_the_bucket_arithmetic(prefix: str) -> None:
    backend = RedisBackend(REDIS_URL, prefix, 1.0)
    items, size = ("t:items", 100.0, 100.0, 10.0), ("t:bytes", 1000.0, 1000.0, 600.0)
    # The scripts run on Redis's clock: between two takes it moves at most the time they took
    # here, which the wait may be shorter by (a µs rounded up).
    began = time.monotonic()
    assert await backend.take([items, size]) == (0.0, -1)
    wait, refusing = await backend.take([items, size])  # the bytes refuse (600 - 400 at 1000/s)
    spent = time.monotonic() - began
    assert refusing == 1 and 0.2 - spent - 1e-6 <= wait <= 0.2
    big = ("big:bytes", 100.0, 100.0, 250.0)  # larger than the burst: passes a full bucket
    began = time.monotonic()
    assert await backend.take([big]) == (0.0, -1)
    wait, refusing = await backend.take([big])  # in debt: -150, and 100 are needed
    spent = time.monotonic() - began
    assert refusing == 0 and 2.5 - spent - 1e-6 <= wait <= 2.5
    tokens = redis.Redis.from_url(REDIS_URL).hget(f"{prefix}:t:items", "tokens")
    assert tokens is not None and 90 <= float(tokens) < 91  # the refused take left it as it was
    await backend.close()


async def test_query_slots_are_shared_and_a_crashed_replicas_slot_ages_out(prefix: str) -> None:
    one, two = [await started(config(prefix, concurrent_queries=2)) for _ in range(2)]
    crashed = RedisBackend(REDIS_URL, prefix, 1.0)
    assert await crashed.acquire("{acme}:queries", 2, "lost", 0.5)  # a replica that dies holding it
    async with one.query("acme"):
        with pytest.raises(Throttled, match="2 queries at once"):
            async with two.query("acme"):
                pass
        async with two.query("globex"):
            pass
    deadline = time.monotonic() + 5
    while True:  # the lost lease expires after query_lease_seconds
        try:
            async with two.query("acme"), one.query("acme"):
                break
        except Throttled:
            assert time.monotonic() < deadline, "the crashed replica's slot never aged out"
            await asyncio.sleep(0.05)
    assert redis.Redis.from_url(REDIS_URL).zcard(f"{prefix}:{{acme}}:queries") == 0
    await crashed.close()
    for limiter in (one, two):
        await limiter.shutdown()


class Sink:
    def __init__(self) -> None:
        self.items = 0

    async def consume(self, batch: Batch) -> None:
        self.items += batch.items


async def test_refused_requests_carry_their_retry_delay(prefix: str) -> None:
    metrics = Metrics("gateway")
    extensions = {"ratelimit": config(prefix, items_per_second=5)}
    sink = Sink()

    def settings(component: str) -> Settings:
        return Settings(
            component,
            Kind.RECEIVER,
            "gateway",
            metrics,
            logging.getLogger("orasi.test"),
            extensions=extensions,
        )

    rate_limit = {"rate_limit": {"limiter": "ratelimit"}}
    receiver = otlp.FACTORY.create(
        settings("otlp"),
        otlp.Config.model_validate(
            {
                "protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}},
                **rate_limit,
            }
        ),
        {Signal.TRACES: sink},
    )
    pushed = zipkin.FACTORY.create(
        settings("zipkin"),
        zipkin.Config.model_validate({"endpoint": "127.0.0.1:0", **rate_limit}),
        {Signal.TRACES: sink},
    )
    assert isinstance(receiver, otlp.OtlpReceiver) and isinstance(pushed, zipkin.ZipkinReceiver)
    await receiver.start()
    await pushed.start()
    tenant = (("x-orasi-tenant", "acme"),)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            export = channel.unary_unary(EXPORT)
            await export(spans("rl", 5).SerializeToString(), metadata=tenant)  # the burst
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await export(spans("rl", 5).SerializeToString(), metadata=tenant)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "5 items/s" in (refused.value.details() or "")
        details = dict(refused.value.trailing_metadata() or ())["grpc-status-details-bin"]
        info = error_details_pb2.RetryInfo()
        assert status_pb2.Status.FromString(details).details[0].Unpack(info)
        assert 0 < info.retry_delay.ToNanoseconds() <= 1_000_000_000

        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{receiver.http_port}/v1/traces",
                content=spans("rl", 5).SerializeToString(),
                headers={"content-type": "application/x-protobuf", **dict(tenant)},
            )
            assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
            five = [  # the bucket holds 5 again only a second after the burst
                {"traceId": "463ac35c9f6413ad", "id": f"a2fb4a1d1a96d31{i}", "name": "x", "timestamp": 1}
                for i in range(5)
            ]
            answer = await client.post(
                f"http://127.0.0.1:{pushed.port}/api/v2/spans", json=five, headers=dict(tenant)
            )
            assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
        assert sink.items == 5  # only the admitted request reached the pipeline
        refused_items = sum(
            metrics.registry.get_sample_value(
                "orasi_receiver_refused_items_total", {"signal": "traces", "receiver": r, "transport": t}
            )
            or 0
            for r, t in (("otlp", "grpc"), ("otlp", "http"), ("zipkin", "http"))
        )
        assert refused_items == 15
    finally:
        await pushed.shutdown()
        await receiver.shutdown()


async def test_the_rest_api_refuses_a_query_over_the_tenants_slots(
    prefix: str, start_api: StartApi, writer: LakeWriter
) -> None:
    limits = config(prefix, lease=30, concurrent_queries=1)  # the lease outlasts the requests below
    server = await start_api(writer, extensions={"ratelimit": limits}, rate_limit={"limiter": "ratelimit"})
    replica = await started(limits, "query_api")
    url = f"http://127.0.0.1:{server.port}/api/v1/query"
    body = {"sql": "SELECT count(*) AS n FROM spans"}
    async with httpx.AsyncClient(timeout=30) as client:
        async with replica.query("acme"):  # another replica runs acme's one query
            refused = await client.post(url, json=body, headers={"x-orasi-tenant": "acme"})
            other = await client.post(url, json=body, headers={"x-orasi-tenant": "globex"})
            jaeger = await client.get(
                f"http://127.0.0.1:{server.port}/api/services", headers={"x-orasi-tenant": "acme"}
            )
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert jaeger.status_code == 429 and jaeger.headers["retry-after"] == "1"
        assert "1 queries at once" in refused.json()["error"]
        assert other.status_code == 200
        done = await client.post(url, json=body, headers={"x-orasi-tenant": "acme"})
        assert done.status_code == 200 and done.json()["rows"] == [[0]]
    await replica.shutdown()


class OwnRedis:
    """A redis-server of the test's own on a free port, which the test stops and starts again."""

    def __init__(self) -> None:
        assert shutil.which("redis-server"), "redis-server is needed (test-packages.sh installs it)"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        self.process = subprocess.Popen([*command, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


async def test_redis_down_means_local_limits_never_an_outage(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_redis.url
    metrics = Metrics("gateway")
    limiter = await started(config("rl", url, timeout=0.2, items_per_second=100), "otlp", metrics)
    await limiter.admit("acme", 50, 1)
    assert limiter.shared and backend_up(metrics, "otlp") == 1
    await asyncio.to_thread(own_redis.stop)  # Redis goes away
    with caplog.at_level(logging.INFO, "orasi.test"):
        for _ in range(10):  # local buckets, full: this replica admits its own 100 …
            await limiter.admit("acme", 10, 1)
        with pytest.raises(Throttled):  # … and no more
            await limiter.admit("acme", 10, 1)
        async with limiter.query("acme"):  # no query limit set: nothing to ask
            pass
        assert not limiter.shared and backend_up(metrics, "otlp") == 0
        await asyncio.sleep(0.25)  # past retry_interval: Redis is tried again, and is still down
        await limiter.admit("globex", 1, 1)
        warnings = [r for r in caplog.records if "Redis does not answer" in r.getMessage()]
        assert len(warnings) == 1  # once per outage

        await asyncio.to_thread(own_redis.start)  # Redis is back
        deadline = time.monotonic() + 10
        while not limiter.shared or backend_up(metrics, "otlp") != 1:
            assert time.monotonic() < deadline, "the limiter never went back to Redis"
            await asyncio.sleep(0.05)
            await limiter.admit("globex", 1, 1)
        assert any("shared through Redis again" in r.getMessage() for r in caplog.records)
    await limiter.shutdown()

    closed_port = f"redis://127.0.0.1:{free_port()}/0"
    closed = await started(config("rl", closed_port, timeout=0.2, concurrent_queries=1), "api")
    async with closed.query("acme"):  # a closed port: the slot is taken locally
        with pytest.raises(Throttled):
            async with closed.query("acme"):
                pass
    assert not closed.shared
    await closed.shutdown()


async def test_a_redis_slower_than_its_timeout_is_gone_around() -> None:
    """A server that accepts and never answers: each check waits the timeout (0.2 s) once, then
    the limiter limits locally without asking it until retry_interval has passed."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    metrics = Metrics("gateway")
    silent_url = f"redis://127.0.0.1:{port}/0"
    limiter = await started(config("rl", silent_url, timeout=0.2, items_per_second=10), "otlp", metrics)
    started_at = time.perf_counter()
    await limiter.admit("acme", 10, 1)  # waits for the timeout, then the local bucket
    first = time.perf_counter() - started_at
    with pytest.raises(Throttled):
        await limiter.admit("acme", 10, 1)
    # not asked again: asking costs the timeout (0.2 s) again
    assert 0.2 <= first < 1.0 and time.perf_counter() - started_at - first < 0.2
    assert backend_up(metrics, "otlp") == 0
    await limiter.shutdown()
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()
