"""`orasi up`'s configuration: what it acknowledges is on disk, and replays keep their batch ids.

The behaviour under a kill -9 is tested end to end in tests/fault/test_orasi_up_killed.py; these
checks name the settings that behaviour rests on, so that a change to one fails here first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orasi_agent.factories import FACTORIES as AGENT
from orasi_bridge.factories import FACTORIES as BRIDGE
from orasi_bridge.lake.config import Config as LakeConfig
from orasi_common.exporters.otap.config import Config as OtapConfig
from orasi_common.exporters.otlp.config import Config as OtlpConfig
from orasi_common.pipeline.graph import ResolvedConfig, resolve
from orasi_common.processors.batch.config import Config as BatchConfig
from orasi_common.processors.memory_limiter.config import Config as MemoryLimiterConfig
from orasi_common.processors.memory_limiter.processor import MIB, limits
from orasi_common.up import PORTS, configs, lock_data_dir
from orasi_gateway.factories import FACTORIES as GATEWAY

DATA = Path("/srv/orasi-data")


@pytest.fixture(scope="module")
def resolved() -> dict[str, ResolvedConfig]:
    factories = {"agent": AGENT, "gateway": GATEWAY, "bridge": BRIDGE}
    return {
        name: resolve(config, factories[name]) for name, config in configs(DATA, PORTS, "127.0.0.1").items()
    }


def test_the_agent_acknowledges_once_a_batch_is_fsynced_in_its_log(
    resolved: dict[str, ResolvedConfig],
) -> None:
    agent = resolved["agent"]
    batch = agent.processors["batch"]
    assert isinstance(batch, BatchConfig) and batch.wait_for_send
    exporter = agent.exporters["otlp"]
    assert isinstance(exporter, OtlpConfig)
    storage = exporter.sending_queue.storage
    assert exporter.sending_queue.enabled and storage is not None and storage.durable
    assert Path(storage.directory).is_relative_to(DATA)
    assert exporter.retry_on_failure.enabled and exporter.retry_on_failure.max_elapsed_time == 0


def test_the_gateway_holds_nothing_and_answers_within_the_agents_timeout(
    resolved: dict[str, ResolvedConfig],
) -> None:
    gateway = resolved["gateway"]
    for pipeline in gateway.service.service.pipelines.values():
        assert "batch" not in pipeline.processors  # it would give replayed batches new ids
    exporter = gateway.exporters["otap"]
    assert isinstance(exporter, OtapConfig)
    assert not exporter.sending_queue.enabled and not exporter.retry_on_failure.enabled
    agent_exporter = resolved["agent"].exporters["otlp"]
    assert isinstance(agent_exporter, OtlpConfig) and agent_exporter.timeout > exporter.timeout


def test_the_bridge_logs_batches_until_they_are_committed(resolved: dict[str, ResolvedConfig]) -> None:
    lake = resolved["bridge"].exporters["lake"]
    assert isinstance(lake, LakeConfig) and lake.wal is not None and lake.wal.durable
    assert Path(lake.wal.directory).is_relative_to(DATA)


def test_one_process_holds_the_data_directory(tmp_path: Path) -> None:
    with (
        lock_data_dir(tmp_path),
        pytest.raises(OSError, match="another orasi up is using the data directory"),
    ):
        lock_data_dir(tmp_path)
    lock_data_dir(tmp_path).close()  # released with its file


def test_the_lake_refuses_more_rows_before_the_memory_limiter_refuses_data(
    resolved: dict[str, ResolvedConfig],
) -> None:
    lake = resolved["bridge"].exporters["lake"]
    assert isinstance(lake, LakeConfig)
    assert lake.flush_size_mib < lake.max_buffer_mib
    for service in resolved.values():
        limiter = service.processors["memory_limiter"]
        assert isinstance(limiter, MemoryLimiterConfig)
        soft, _ = limits(limiter)
        # A flush holds its rows twice (sorted for the files): still below the soft limit.
        assert 2 * lake.max_buffer_mib * MIB < soft


def test_every_service_registers_in_process_or_in_the_etcd_given(resolved: dict[str, ResolvedConfig]) -> None:
    for name, config in resolved.items():
        assert config.service.service.extensions[-1] == "etcd", name  # last: every endpoint known
        assert config.extensions["etcd"].endpoints == []
    with_etcd = configs(DATA, PORTS, "127.0.0.1", etcd="http://10.0.0.1:2379", region="eu-west-1")
    for config in with_etcd.values():
        etcd = config.extensions["etcd"]
        assert (etcd["endpoints"], etcd["region"]) == (["http://10.0.0.1:2379"], "eu-west-1")
