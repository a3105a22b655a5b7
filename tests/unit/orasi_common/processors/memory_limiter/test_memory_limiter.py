"""The memory limiter, driven by check(rss=...) or a stand-in measurement: refuse above the soft
limit (once the allocators' free memory is given back), accept below it; give free memory back
when data stops."""

from __future__ import annotations

import logging
import time

import pytest

from orasi_common.errors import Unavailable
from orasi_common.pdata import Signal
from orasi_common.processors.memory_limiter import FACTORY, Config, MemoryLimiter
from orasi_common.processors.memory_limiter import processor as limiter_module
from orasi_common.processors.memory_limiter.processor import available_memory, limits
from orasi_common.telemetry.metrics import Metrics

from ....builders import batch_with
from ....doubles import RecordingConsumer, make_settings, sample

MIB = 1024 * 1024


def _limiter(metrics: Metrics, consumer: RecordingConsumer, **config: object) -> MemoryLimiter:
    return MemoryLimiter(make_settings("memory_limiter", metrics=metrics), Config(**config), consumer)  # type: ignore[arg-type]


def test_factory() -> None:
    assert FACTORY.type == "memory_limiter"
    assert FACTORY.config_type is Config


def test_limits_in_mib() -> None:
    assert limits(Config(limit_mib=100, spike_limit_mib=30)) == (70 * MIB, 100 * MIB)
    assert limits(Config(limit_mib=100)) == (80 * MIB, 100 * MIB)  # spike defaults to 20 %


def test_limits_in_percent_of_available_memory() -> None:
    total = 1000 * MIB
    assert limits(Config(limit_percentage=50, spike_limit_percentage=10), total) == (400 * MIB, 500 * MIB)
    assert limits(Config(limit_percentage=50), total) == (400 * MIB, 500 * MIB)
    soft, hard = limits(Config(limit_percentage=80))
    assert 0 < soft < hard <= available_memory()


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"limit_mib": 100, "limit_percentage": 50},
        {"limit_mib": 100, "spike_limit_mib": 100},
        {"limit_percentage": 50, "spike_limit_percentage": 60},
        {"limit_percentage": 101},
        {"limit_mib": 0},
        {"limit_mib": 100, "release_when_idle": -1},
    ],
)
def test_invalid_configs(config: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Config(**config)


async def test_states_follow_the_measured_memory(metrics: Metrics, recorder: RecordingConsumer) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=100, spike_limit_mib=20, retry_after=3)
    limiter.check(rss=10 * MIB)
    await limiter.consume(batch_with(Signal.TRACES, 2))
    assert recorder.items == 2
    assert sample(metrics, "orasi_process_memory_rss_bytes") == 10 * MIB

    limiter.check(rss=80 * MIB)  # at the soft limit
    assert limiter.refusing
    with pytest.raises(Unavailable) as caught:
        await limiter.consume(batch_with(Signal.TRACES, 5))
    assert caught.value.retry_after == 3
    assert "80 MiB" in caught.value.message
    assert recorder.items == 2
    assert (
        sample(metrics, "orasi_processor_refused_items_total", signal="traces", processor="memory_limiter")
        == 5
    )

    limiter.check(rss=80 * MIB - 1)  # below the soft limit again
    assert not limiter.refusing
    await limiter.consume(batch_with(Signal.LOGS, 1))
    assert recorder.items == 3


async def test_hard_limit_forces_a_collection(
    metrics: Metrics, recorder: RecordingConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    collections: list[int] = []
    monkeypatch.setattr(limiter_module.gc, "collect", lambda: collections.append(1) or 0)
    limiter = _limiter(metrics, recorder, limit_mib=100)
    limiter.check(rss=90 * MIB)
    assert collections == []
    limiter.check(rss=100 * MIB)
    assert collections == [1]
    assert limiter.refusing


def test_one_log_line_per_state_change(
    metrics: Metrics, recorder: RecordingConsumer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=100)
    with caplog.at_level(logging.WARNING, logger="orasi.test"):
        for rss in (10, 85, 86, 90, 20, 30):
            limiter.check(rss=rss * MIB)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Memory is above the soft limit; refusing data.",
        "Memory is below the soft limit again; accepting data.",
    ]


async def test_start_measures_and_shutdown_is_safe(metrics: Metrics, recorder: RecordingConsumer) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=1024 * 1024, check_interval=3600)
    await limiter.shutdown()  # safe without start
    await limiter.start()
    assert sample(metrics, "orasi_process_memory_rss_bytes") > 0
    assert not limiter.refusing
    await limiter.consume(batch_with(Signal.METRICS, 1))
    assert recorder.items == 1
    await limiter.shutdown()
    await limiter.shutdown()


class _Releases:
    """Stands in for ``release_free_memory``: counts calls; ``runs`` says whether one ran."""

    def __init__(self) -> None:
        self.calls = 0
        self.runs = True

    def __call__(self, force: bool = False) -> bool:
        self.calls += 1
        return self.runs


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> _Releases:
    """``release_free_memory`` replaced by a _Releases (that runs, unless a test says otherwise)."""
    stand_in = _Releases()
    monkeypatch.setattr(limiter_module, "release_free_memory", stand_in)
    return stand_in


def _measuring(limiter: MemoryLimiter, monkeypatch: pytest.MonkeyPatch, *readings_mib: int) -> list[int]:
    """Make the limiter read these RSS values in turn; the list left shows how many it read."""
    readings = [mib * MIB for mib in readings_mib]
    monkeypatch.setattr(limiter, "measure", lambda: readings.pop(0))
    return readings


async def test_free_memory_is_given_back_before_data_is_refused(
    metrics: Metrics, recorder: RecordingConsumer, monkeypatch: pytest.MonkeyPatch, releases: _Releases
) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=100, spike_limit_mib=20)
    # 90 MiB resident, of which 25 MiB only allocator slack: returned, and data still flows.
    left = _measuring(limiter, monkeypatch, 90, 65)
    limiter.check()
    assert releases.calls == 1 and left == []
    assert not limiter.refusing
    assert sample(metrics, "orasi_process_memory_rss_bytes") == 65 * MIB
    await limiter.consume(batch_with(Signal.TRACES, 1))
    assert recorder.items == 1


def test_data_is_refused_when_giving_back_is_not_enough(
    metrics: Metrics, recorder: RecordingConsumer, monkeypatch: pytest.MonkeyPatch, releases: _Releases
) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=100, spike_limit_mib=20)
    _measuring(limiter, monkeypatch, 90, 85)
    limiter.check()
    assert releases.calls == 1
    assert limiter.refusing
    assert sample(metrics, "orasi_process_memory_rss_bytes") == 85 * MIB


def test_a_release_that_did_not_run_is_not_measured_again(
    metrics: Metrics, recorder: RecordingConsumer, monkeypatch: pytest.MonkeyPatch, releases: _Releases
) -> None:
    releases.runs = False  # another limiter of the process released a moment ago
    limiter = _limiter(metrics, recorder, limit_mib=100, spike_limit_mib=20)
    left = _measuring(limiter, monkeypatch, 90, 10)
    limiter.check()
    assert left == [10 * MIB]
    assert limiter.refusing


def test_below_the_soft_limit_nothing_is_released(
    metrics: Metrics, recorder: RecordingConsumer, monkeypatch: pytest.MonkeyPatch, releases: _Releases
) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=100, spike_limit_mib=20)
    _measuring(limiter, monkeypatch, 79)
    limiter.check()
    limiter.check(rss=95 * MIB)  # a given measurement is taken as it is
    assert releases.calls == 0


async def test_free_memory_is_given_back_once_when_data_stops(
    metrics: Metrics, recorder: RecordingConsumer, releases: _Releases
) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=100, release_when_idle=5)
    assert not limiter.release_if_idle(time.monotonic() + 60)  # no data yet: nothing to give back
    await limiter.consume(batch_with(Signal.TRACES, 1))
    data_at = time.monotonic()
    assert not limiter.release_if_idle(data_at + 4)
    assert limiter.release_if_idle(data_at + 6)
    assert not limiter.release_if_idle(data_at + 60)  # once per idle period
    assert releases.calls == 1
    await limiter.consume(batch_with(Signal.TRACES, 1))
    assert limiter.release_if_idle(time.monotonic() + 6)
    assert releases.calls == 2


async def test_release_when_idle_zero_never_releases(
    metrics: Metrics, recorder: RecordingConsumer, releases: _Releases
) -> None:
    limiter = _limiter(metrics, recorder, limit_mib=100, release_when_idle=0)
    await limiter.consume(batch_with(Signal.TRACES, 1))
    assert not limiter.release_if_idle(time.monotonic() + 3600)
    assert releases.calls == 0
