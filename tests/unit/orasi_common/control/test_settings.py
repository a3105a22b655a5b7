"""Live settings without etcd: the key layout, the merge over the file configuration and its
validation, the CLI's checks, and the extension's handling of puts, deletes and resyncs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.control import settings
from orasi_common.control.settings import SettingsError
from orasi_common.control.settings_cli import Refused, check, parse_assignments
from orasi_common.control.watch import Entry
from orasi_common.extensions.etcd.live_settings import LiveSettings
from orasi_common.pipeline.breaker import BreakerConfig, BreakerState, CircuitBreaker
from orasi_common.processors.batch import Config as BatchConfig
from orasi_common.processors.memory_limiter import Config as LimiterConfig
from orasi_common.telemetry.metrics import Metrics

from ...doubles import sample

BATCH_KEYS = frozenset({"send_batch_size", "send_batch_size_mib", "send_batch_max_size", "timeout"})


def test_keys_and_targets() -> None:
    assert settings.settings_key("eu-1", "gateway", "loadbalancing/bridges") == (
        "/orasi/eu-1/config/gateway/loadbalancing/bridges"
    )
    assert settings.settings_prefix("eu-1", "agent") == "/orasi/eu-1/config/agent/"
    assert settings.parse_target("gateway/loadbalancing/bridges") == ("gateway", "loadbalancing/bridges")
    for bad in ("gateway", "router/batch", "gateway/"):
        with pytest.raises(ValueError, match="KIND/COMPONENT_ID"):
            settings.parse_target(bad)
    with pytest.raises(ValueError, match="region"):
        settings.settings_prefix("a/b", "agent")


def test_decode_takes_yaml_or_json_objects_only() -> None:
    assert settings.decode("batch", b"send_batch_size: 2\n") == {"send_batch_size": 2}
    assert settings.decode("batch", b'{"timeout": 0.5}') == {"timeout": 0.5}
    assert settings.decode("batch", b"") == {}
    for bad, message in ((b"- 1\n", "got list"), (b"a: [", "ParserError"), (b"\xff", "UnicodeDecodeError")):
        with pytest.raises(SettingsError, match=message):
            settings.decode("batch", bad)


def test_resolve_merges_over_the_file_configuration_and_validates_with_its_model() -> None:
    file = BatchConfig(send_batch_size=100, send_batch_max_size=200, timeout=1.0)
    new = settings.resolve("batch", file, {"send_batch_size": 150, "timeout": 0.5}, BATCH_KEYS)
    assert (new.send_batch_size, new.send_batch_max_size, new.timeout) == (150, 200, 0.5)
    assert settings.changed_keys(file, new) == ["send_batch_size", "timeout"]
    with pytest.raises(SettingsError) as refused:
        settings.resolve("batch", file, {"send_batch_size": 0, "wait_for_send": True, "x": 1}, BATCH_KEYS)
    assert refused.value.problems == [
        "batch.wait_for_send: not reloadable (reloadable: send_batch_max_size, send_batch_size, "
        "send_batch_size_mib, timeout)",
        "batch.x: not reloadable (reloadable: send_batch_max_size, send_batch_size, send_batch_size_mib, "
        "timeout)",
        "batch.send_batch_size: Input should be greater than or equal to 1",
        "batch.x: unknown key (check its spelling and indentation)",
    ]
    # A rule between keys is checked against the file's other values.
    with pytest.raises(SettingsError, match="send_batch_max_size must be 0 or at least send_batch_size"):
        settings.resolve("batch", file, {"send_batch_size": 300}, BATCH_KEYS)


def test_a_null_resets_a_key_so_the_memory_limiter_can_switch_to_a_percentage() -> None:
    keys = frozenset({"limit_mib", "spike_limit_mib", "limit_percentage", "spike_limit_percentage"})
    file = LimiterConfig(limit_mib=512, spike_limit_mib=64)
    new = settings.resolve(
        "memory_limiter", file, {"limit_mib": None, "spike_limit_mib": None, "limit_percentage": 80}, keys
    )
    assert (new.limit_mib, new.spike_limit_mib, new.limit_percentage) == (None, None, 80)
    with pytest.raises(SettingsError, match="set exactly one of limit_mib and limit_percentage"):
        settings.resolve("memory_limiter", file, {"limit_percentage": 80}, keys)


class _Nested(ComponentConfig):
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="Per endpoint.")
    endpoint_timeout: float = Field(default=5.0, gt=0, description="Seconds.")


def test_nested_keys_merge_key_by_key_and_a_star_names_every_key_below() -> None:
    file = _Nested(circuit_breaker=BreakerConfig(failure_threshold=5, open_duration=9))
    keys = frozenset({"circuit_breaker.*"})
    new = settings.resolve("lb", file, {"circuit_breaker": {"failure_threshold": 2}}, keys)
    assert new.circuit_breaker == BreakerConfig(failure_threshold=2, open_duration=9)
    assert settings.changed_keys(file, new) == ["circuit_breaker.failure_threshold"]
    with pytest.raises(SettingsError) as refused:
        settings.resolve("lb", file, {"endpoint_timeout": 1, "circuit_breaker": {"open_duration": -1}}, keys)
    assert refused.value.problems == [
        "lb.endpoint_timeout: not reloadable (reloadable: circuit_breaker.*)",
        "lb.circuit_breaker.open_duration: Input should be greater than 0",
    ]


def test_a_breaker_takes_new_thresholds_keeping_its_state() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=5, open_duration=30), clock=lambda: now[0])
    breaker.record_failure()
    breaker.record_failure()
    breaker.reconfigure(BreakerConfig(failure_threshold=3, open_duration=1))
    states = [breaker.state]
    breaker.record_failure()  # the third failure counted: the new threshold
    states.append(breaker.state)
    now[0] = 1.5  # past the new open_duration
    assert breaker.allow()
    states.append(breaker.state)
    assert states == [BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN]


def test_cli_assignments_and_checks() -> None:
    assert parse_assignments(["send_batch_size=2000", "timeout=0.5", "circuit_breaker.open_duration=5"]) == {
        "send_batch_size": 2000,
        "timeout": 0.5,
        "circuit_breaker": {"open_duration": 5},
    }
    with pytest.raises(Refused, match="KEY=VALUE"):
        parse_assignments(["timeout"])
    check("agent", "batch", {"send_batch_size": 10, "timeout": None})
    with pytest.raises(Refused) as refused:
        check("agent", "batch/fast", {"send_batch_size": "x", "max_tenants": 3})
    assert str(refused.value).splitlines() == [
        "batch/fast.max_tenants: not reloadable (reloadable: send_batch_max_size, send_batch_size, "
        "send_batch_size_mib, timeout)",
        "batch/fast.send_batch_size: Input should be a valid integer, unable to parse string as an integer",
    ]
    with pytest.raises(Refused, match="has no reloadable keys"):
        check("agent", "resource", {"attributes": []})


class _Component:
    reloadable_keys = BATCH_KEYS

    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self.applied: list[BatchConfig] = []

    def reconfigure(self, config: BatchConfig) -> None:
        self.config = config
        self.applied.append(config)


class _Host:
    def __init__(self, components: dict[str, list[Any]]) -> None:
        self._components = components

    def exporter(self, exporter_id: str) -> Any:
        raise LookupError(exporter_id)

    def components(self, component_id: str) -> list[Any]:
        return self._components.get(component_id, [])

    def listening(self) -> dict[str, str]:
        return {}


def test_live_settings_apply_refuse_once_per_revision_and_revert(caplog: pytest.LogCaptureFixture) -> None:
    file = BatchConfig(send_batch_size=100, timeout=1.0)
    instances = [_Component(file), _Component(file)]  # one per pipeline
    metrics = Metrics("agent")
    logger = logging.getLogger("orasi.test.live")
    live = LiveSettings(["http://127.0.0.1:1"], "r1", "agent", _Host({"batch": instances}), metrics, logger)
    key = b"/orasi/r1/config/agent/batch"

    def count(outcome: str, component: str = "batch") -> float:
        return sample(metrics, "orasi_config_updates_total", component=component, outcome=outcome)

    caplog.set_level(logging.INFO, "orasi.test.live")
    live.listed([Entry(key, b"send_batch_size: 7\n", 5)], 5)
    assert [c.config.send_batch_size for c in instances] == [7, 7] and count("applied") == 1
    assert sample(metrics, "orasi_config_revision", component="batch") == 5
    live.put(Entry(key, b"send_batch_size: -7\n", 6))
    live.listed([Entry(key, b"send_batch_size: -7\n", 6)], 9)  # a resync reads it again
    assert [c.config.send_batch_size for c in instances] == [7, 7] and count("refused") == 1
    live.put(Entry(b"/orasi/r1/config/agent/nothing", b"a: 1\n", 7))
    assert count("refused", "nothing") == 1
    live.put(Entry(key, b"timeout: 3\n", 10))  # a new value replaces the stored one, over the file's
    assert [(c.config.send_batch_size, c.config.timeout) for c in instances] == [(100, 3.0)] * 2
    live.listed([], 12)  # deleted while the watch was cut: back to the file's
    assert all(c.config == file for c in instances) and count("applied") == 3
    live.delete(key, 13)  # nothing stored any more: nothing to do
    assert len(instances[0].applied) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Applied live settings.",
        "Refused live settings; the component keeps its current values.",
        "Refused live settings; the component keeps its current values.",
        "Applied live settings.",
        "Live settings deleted; the component runs with its file configuration again.",
    ]
    assert caplog.records[3].keys == ["send_batch_size", "timeout"]  # type: ignore[attr-defined]
    assert "-7" not in str(caplog.records[1].__dict__.get("problems"))
