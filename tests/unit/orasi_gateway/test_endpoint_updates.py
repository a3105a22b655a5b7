"""The `loadbalancing` exporter applies the resolver's endpoint sets one at a time: an update that
waits while opening a channel (TLS files read in a thread) cannot be overtaken by a newer one and
then put its older set back; the ring and the endpoints end equal to the last reported set, and
every channel of an endpoint that left is closed exactly once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import grpc
import pytest

from orasi_common.exporters.otlp.client import open_channel
from orasi_common.pdata import Signal
from orasi_common.pipeline.breaker import BreakerConfig, BreakerState
from orasi_common.pipeline.component import Kind
from orasi_gateway.loadbalancing import exporter as exporter_module
from orasi_gateway.loadbalancing.config import Config
from orasi_gateway.loadbalancing.exporter import LoadBalancingExporter

from ..builders import batch_with
from ..doubles import make_settings, sample

# channels are lazy: nothing listens at these addresses and nothing is sent
A, B, SLOW, C = (f"127.0.0.1:{port}" for port in (1, 2, 3, 4))


class Channels:
    """Stands in for ``open_channel``: real channels, counted as they are opened and closed; the
    opening of ``SLOW`` waits for ``release`` (as a TLS one waits for its files)."""

    def __init__(self) -> None:
        self.opened: collections.Counter[str] = collections.Counter()
        self.closed: collections.Counter[str] = collections.Counter()
        self.slow_waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.c_opened = asyncio.Event()

    async def open(self, config: Any, endpoint: str | None = None) -> grpc.aio.Channel:
        name = endpoint or config.endpoint
        if name == SLOW:
            self.slow_waiting.set()
            await self.release.wait()
        channel = await open_channel(config, endpoint)
        close = channel.close

        async def counted_close(grace: float | None = None) -> None:
            self.closed[name] += 1
            await close(grace)

        channel.close = counted_close
        self.opened[name] += 1
        if name == C:
            self.c_opened.set()
        return channel


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Channels:
    fake = Channels()
    monkeypatch.setattr(exporter_module, "open_channel", fake.open)
    return fake


def exporter() -> LoadBalancingExporter:
    config = Config.model_validate(
        {"resolver": {"static": {"endpoints": [A, B]}}, "tls": {"insecure": True}, "endpoint_timeout": 1}
    )
    return LoadBalancingExporter(make_settings("loadbalancing", Kind.EXPORTER), config)


async def settled(lb: LoadBalancingExporter) -> None:
    """Every endpoint update has run to its end (within 5 s)."""
    async with asyncio.timeout(5):
        while lb._updates:
            await asyncio.gather(*lb._updates, return_exceptions=True)


async def test_an_older_set_waiting_for_its_channel_does_not_win(channels: Channels) -> None:
    lb = exporter()
    await lb.start()
    primary = lb._groups[0]
    assert primary.ring.endpoints == [A, B]
    try:
        lb._on_change(primary, [A, SLOW])  # what the resolver calls
        async with asyncio.timeout(5):
            await channels.slow_waiting.wait()
        lb._on_change(primary, [A, C])  # newer, while the older one waits for SLOW's channel
        # An update running beside the waiting one would open C now and apply [A, C] before [A, SLOW]
        # comes back; the serialised one must not start before the waiting one ends.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channels.c_opened.wait(), 0.3)
        channels.release.set()
        await settled(lb)

        assert primary.ring.endpoints == [A, C]
        assert sorted(primary.endpoints) == [A, C]
        assert channels.closed == {B: 1, SLOW: 1}, "endpoints that left closed exactly once"
        assert all(n == 1 for n in channels.opened.values()), channels.opened
        assert sample(lb._settings.metrics, "orasi_loadbalancer_endpoints", group="primary") == 2
    finally:
        await lb.shutdown()
    assert channels.closed == {A: 1, B: 1, SLOW: 1, C: 1}
    await lb.shutdown()  # safe twice: nothing closed again
    assert channels.closed == {A: 1, B: 1, SLOW: 1, C: 1}


async def test_sets_reported_while_one_is_applied_end_on_the_last(channels: Channels) -> None:
    lb = exporter()
    await lb.start()
    primary = lb._groups[0]
    try:
        lb._on_change(primary, [SLOW])
        async with asyncio.timeout(5):
            await channels.slow_waiting.wait()
        for names in ([A], [A, B, C], [C], [B, C]):  # only the last one matters
            lb._on_change(primary, names)
        channels.release.set()
        await settled(lb)
        assert primary.ring.endpoints == [B, C]
        assert sorted(primary.endpoints) == [B, C]
        # [SLOW] was applied (A and B closed), then only the last set: B and C opened, SLOW closed
        assert channels.opened == {A: 1, B: 2, SLOW: 1, C: 1}
        assert channels.closed == {A: 1, B: 1, SLOW: 1}
    finally:
        await lb.shutdown()
    assert channels.closed == {A: 1, B: 2, SLOW: 1, C: 1}


async def test_a_set_whose_channel_does_not_open_is_logged_and_the_ring_kept(
    channels: Channels, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A TLS file that went missing after start (say) fails one update: the error is logged with
    the group and the set, the ring stays as it was, and the next reported set is applied."""
    bad = "127.0.0.1:5"

    async def opening(config: Any, endpoint: str | None = None) -> grpc.aio.Channel:
        if (endpoint or config.endpoint) == bad:
            raise FileNotFoundError(2, "No such file or directory", "/etc/orasi/ca.pem")
        return await channels.open(config, endpoint)

    monkeypatch.setattr(exporter_module, "open_channel", opening)
    lb = exporter()
    await lb.start()
    primary = lb._groups[0]
    try:
        lb._on_change(primary, [A, bad])
        await settled(lb)
        assert primary.ring.endpoints == [A, B]
        [record] = [r for r in caplog.records if "could not be applied" in r.getMessage()]
        assert record.levelname == "ERROR"
        assert record.__dict__["group"] == "primary" and record.__dict__["endpoints"] == [A, bad]
        assert "ca.pem" in caplog.text  # the traceback names the missing file

        lb._on_change(primary, [A, C])
        await settled(lb)
        assert primary.ring.endpoints == [A, C]
        assert sorted(primary.endpoints) == [A, C]
    finally:
        await lb.shutdown()


async def test_an_endpoint_that_left_with_its_breaker_open_comes_back_with_it(channels: Channels) -> None:
    """A dead upstream's registration expires after its breaker opened: when it registers again
    it is probed (``success_threshold`` successes), not trusted at once; one that left with its
    breaker closed comes back with a new one. Live settings reach the breakers kept meanwhile."""
    lb = exporter()
    await lb.start()
    primary = lb._groups[0]
    try:
        left_open, left_closed = primary.endpoints[A].breaker, primary.endpoints[B].breaker
        for _ in range(3):
            left_open.record_failure()
        lb._on_change(primary, [C])
        await settled(lb)
        lb.reconfigure(
            lb.config.model_copy(
                update={"circuit_breaker": BreakerConfig(open_duration=0.001, success_threshold=2)}
            )
        )
        lb._on_change(primary, [A, B, C])
        await settled(lb)

        assert primary.endpoints[A].breaker is left_open and left_open.state is BreakerState.OPEN
        assert sample(lb._settings.metrics, "orasi_circuit_breaker_state", endpoint=A) == BreakerState.OPEN
        assert primary.endpoints[B].breaker is not left_closed
        assert primary.endpoints[B].breaker.state is BreakerState.CLOSED
        states = []
        for _ in range(2):  # the new open_duration is over; two probes close it
            assert left_open.allow()
            left_open.record_success()
            states.append(left_open.state)
        assert states == [BreakerState.HALF_OPEN, BreakerState.CLOSED]
    finally:
        await lb.shutdown()


async def test_a_probe_cancelled_by_the_callers_timeout_does_not_keep_its_slot(
    channels: Channels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A half-open endpoint's probe that hangs until the sending queue's own timeout cancels it
    gives its probe slot back: the next batch probes the endpoint again. Before, the slot stayed
    taken and the endpoint, half-open for good, never had traffic again."""
    lb = exporter()
    await lb.start()
    try:
        group = lb._groups[0]
        endpoint = group.endpoints[A]
        lb.reconfigure(lb.config.model_copy(update={"circuit_breaker": BreakerConfig(open_duration=0.001)}))
        for _ in range(3):
            endpoint.breaker.record_failure()
        await asyncio.sleep(0.002)  # open_duration is over: the next call is a probe
        hung = asyncio.Event()

        async def hang(batch: Any) -> None:
            hung.set()
            await asyncio.Event().wait()

        monkeypatch.setattr(endpoint.client, "send", hang)
        part = exporter_module._Part(A, batch_with(Signal.TRACES, 1))
        task = asyncio.create_task(lb._deliver(part, group))
        await hung.wait()
        assert endpoint.breaker.state is BreakerState.HALF_OPEN and not endpoint.breaker.available()
        task.cancel()  # as asyncio.timeout in the sending queue's attempt cancels it
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert endpoint.breaker.state is BreakerState.HALF_OPEN and endpoint.breaker.allow()
    finally:
        await lb.shutdown()
