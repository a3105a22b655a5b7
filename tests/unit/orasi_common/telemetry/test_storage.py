"""``orasi_storage_usage_percent{volume}``: statvfs at scrape time, off the event loop."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orasi_common.pipeline.component import Kind
from orasi_common.pipeline.exporter_helper import ExporterConfig, ExporterHelper
from orasi_common.telemetry import storage
from orasi_common.telemetry.admin import AdminApp
from orasi_common.telemetry.metrics import Metrics

from ...doubles import make_settings, sample


class _Statvfs:
    """The fields of os.statvfs_result that usage() reads."""

    def __init__(self, blocks: int, free: int, available: int, frsize: int = 4096) -> None:
        self.f_blocks, self.f_bfree, self.f_bavail, self.f_frsize = blocks, free, available, frsize


def test_usage_counts_the_blocks_reserved_for_root_as_full_like_df(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1000 blocks: 600 used, 400 free of which 100 are reserved for root (300 available).
    monkeypatch.setattr(os, "statvfs", lambda _: _Statvfs(1000, 400, 300))
    found = storage.usage("/anywhere")
    assert found == storage.Usage(used_bytes=600 * 4096, available_bytes=300 * 4096)
    assert found.percent == pytest.approx(100 * 600 / 900)


def test_usage_of_the_real_filesystem_agrees_with_statvfs(tmp_path: Path) -> None:
    found = storage.usage(str(tmp_path))
    assert found is not None
    st = os.statvfs(tmp_path)
    assert found.used_bytes + found.available_bytes <= st.f_blocks * st.f_frsize
    assert 0 < found.percent < 100


def test_a_missing_directory_has_no_sample(metrics: Metrics, tmp_path: Path) -> None:
    metrics.watch_volume("wal/otlp", str(tmp_path / "not-yet"))
    samples = [s for family in metrics.registry.collect() for s in family.samples]
    assert not [s for s in samples if s.name.startswith("orasi_storage")]
    (tmp_path / "not-yet").mkdir()
    assert sample(metrics, "orasi_storage_usage_percent", volume="wal/otlp") > 0


def test_one_sample_per_volume_computed_at_each_scrape(
    metrics: Metrics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics.watch_volume("wal/otlp", str(tmp_path))
    metrics.watch_volume("cache/lake", str(tmp_path))
    metrics.watch_volume("cache/lake", str(tmp_path / "elsewhere"))  # a second call replaces the first
    (tmp_path / "elsewhere").mkdir()
    used = {"free": 400}
    monkeypatch.setattr(os, "statvfs", lambda _: _Statvfs(1000, used["free"], used["free"]))
    assert sample(metrics, "orasi_storage_usage_percent", volume="wal/otlp") == pytest.approx(60)
    used["free"] = 100
    assert sample(metrics, "orasi_storage_usage_percent", volume="wal/otlp") == pytest.approx(90)
    assert sample(metrics, "orasi_storage_available_bytes", volume="cache/lake") == 100 * 4096
    assert metrics.storage.volumes() == {"wal/otlp": str(tmp_path), "cache/lake": str(tmp_path / "elsewhere")}


async def _get(app: AdminApp, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET"}, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def test_metrics_are_rendered_off_the_event_loop(
    metrics: Metrics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics.watch_volume("wal/otlp", str(tmp_path))
    threads: list[threading.Thread] = []
    real_statvfs = os.statvfs

    def statvfs(path: str) -> os.statvfs_result:
        threads.append(threading.current_thread())
        return real_statvfs(path)

    monkeypatch.setattr(os, "statvfs", statvfs)
    app = AdminApp("agent", metrics, lambda: True, dict)
    code, body = await _get(app, "/metrics")
    assert code == 200
    assert threads and threading.main_thread() not in threads  # the loop runs in the main thread
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert [s.labels for s in families["orasi_storage_usage_percent"].samples] == [{"volume": "wal/otlp"}]
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert "process_cpu_seconds" in families


def test_a_logged_sending_queue_watches_its_directory(metrics: Metrics, tmp_path: Path) -> None:
    config = ExporterConfig.model_validate({"sending_queue": {"storage": {"directory": str(tmp_path)}}})

    async def send(_: object) -> None:
        pass

    ExporterHelper(make_settings("otlp/up", Kind.EXPORTER, metrics), config, send)
    assert metrics.storage.volumes() == {"wal/otlp/up": str(tmp_path)}
