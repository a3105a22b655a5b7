"""Stream rules reload without a restart: from the file on SIGHUP (``Service.reload``), with live
settings from etcd staying over the file's values (``LiveSettings.file_changed``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from orasi_bridge.factories import FACTORIES
from orasi_bridge.lake.writer import LakeWriter
from orasi_bridge.stream.filter import Filter
from orasi_bridge.stream.redact import Redact
from orasi_common.config import load_config
from orasi_common.control.watch import Entry
from orasi_common.extensions.etcd.live_settings import LiveSettings
from orasi_common.service import Service

FILTER = {"type": "filter", "signals": ["traces"], "drop_where": "name = 'x'"}


def write(path: Path, stream: list[dict[str, Any]], flush_interval: float = 10) -> None:
    lake = {
        "catalog_uri": f"sqlite:///{path.parent / 'catalog.db'}",
        "warehouse": f"file://{path.parent / 'warehouse'}",
        "flush_interval": flush_interval,
        "stream": stream,
    }
    document = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"lake": lake},
        "service": {
            "telemetry": {"admin": {"endpoint": "127.0.0.1:0"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["lake"]}},
        },
    }
    path.write_text(yaml.safe_dump(document))


def kinds(writer: LakeWriter) -> list[type]:
    return [type(step.processor) for step in writer._stream.steps] if writer._stream else []


async def test_sighup_applies_the_new_stream_and_keeps_the_rest_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bridge.yaml"
    write(path, [FILTER])
    service = Service("bridge", load_config(path), FACTORIES, str(path))
    writer = service.graph.exporters["lake"]
    assert isinstance(writer, LakeWriter)
    writer.reconfigure(writer.config)  # what start() builds (start opens the catalog)
    assert kinds(writer) == [Filter]

    write(path, [FILTER, {"type": "redact"}], flush_interval=5)
    with caplog.at_level(logging.INFO, "orasi.bridge"):
        assert await service.reload() == ["lake"]
    assert kinds(writer) == [Filter, Redact]
    assert writer.config.flush_interval == 10  # not reloadable: at the next restart
    assert any(r.message.startswith("Keys changed") and r.keys == ["flush_interval"] for r in caplog.records)

    path.write_text("exporters: [")  # an invalid file changes nothing
    assert await service.reload() == []
    assert kinds(writer) == [Filter, Redact]
    write(path, [{"type": "filter", "signals": ["traces"], "drop_where": "nme = 'x'"}])
    assert await service.reload() == []
    assert kinds(writer) == [Filter, Redact]


async def test_live_settings_stay_over_a_reloaded_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    write(path, [FILTER])
    service = Service("bridge", load_config(path), FACTORIES, str(path))
    writer = service.graph.exporters["lake"]
    assert isinstance(writer, LakeWriter)
    file_config = writer.config
    live = LiveSettings(
        ["http://127.0.0.1:1"], "r1", "bridge", service.graph, service.metrics, logging.getLogger("test")
    )
    stored = yaml.safe_dump({"stream": [{"type": "redact"}]}).encode()
    live.put(Entry((live.prefix + "lake").encode(), stored, 7))
    assert kinds(writer) == [Redact]

    reloaded = file_config.model_copy(update={"stream": [*file_config.stream, *writer.config.stream]})
    running = live.file_changed("lake", reloaded)  # SIGHUP: the stored stream stays over the file's
    assert running == writer.config
    live.delete((live.prefix + "lake").encode(), 8)  # back to the file's: the reloaded one
    assert kinds(writer) == [Filter, Redact]
