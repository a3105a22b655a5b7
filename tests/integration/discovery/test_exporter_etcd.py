"""The `otlp` exporter with an `etcd` resolver: it sends to one registered peer, keeps it while it
is registered, and moves to another within 2 s when it deregisters; nothing sent is lost.

    batches ──▶ otlp exporter (resolver etcd) ──▶ one of the sinks registered in etcd
"""

from __future__ import annotations

import asyncio
import logging
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from orasi_common.control.registration import key_of
from orasi_common.exporters.otlp import FACTORY
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.sink import OtlpSink
from tests.integration.discovery.records import etcd_client, registration


def logs(count: int) -> Batch:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for n in range(count):
        records.add().body.string_value = f"log {n}"
    return Batch.from_message(Signal.LOGS, request)


async def test_the_otlp_exporter_moves_to_another_registered_peer_when_its_peer_leaves(
    shared_etcd: str,
) -> None:
    region = f"exp-{time.monotonic_ns()}"
    etcd = etcd_client(shared_etcd)
    config = FACTORY.config_type.model_validate(
        {
            "resolver": {"etcd": {"service": "gateway", "region": region, "endpoints": [shared_etcd]}},
            "tls": {"insecure": True},
            "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.2},
        }
    )
    settings = Settings("otlp/up", Kind.EXPORTER, "agent", Metrics("agent"), logging.getLogger("orasi.test"))
    exporter = FACTORY.create(settings, config)
    try:
        with OtlpSink() as first, OtlpSink() as second:
            sinks = {"g1": first, "g2": second}
            for name, sink in sinks.items():
                await etcd.put(key_of(region, "gateway", name).encode(), registration(sink.endpoint))
            await exporter.start()
            for _ in range(5):
                await exporter.consume(logs(10))
            deadline = time.monotonic() + 5
            while first.items(Signal.LOGS) + second.items(Signal.LOGS) < 50:
                assert time.monotonic() < deadline, "the first 50 logs did not arrive"
                await asyncio.sleep(0.02)
            used = [name for name, sink in sinks.items() if sink.items(Signal.LOGS)]
            assert len(used) == 1, "one peer at a time"
            (name,) = used
            other = "g2" if name == "g1" else "g1"

            await etcd.delete(key_of(region, "gateway", name).encode())
            left, sent = time.monotonic(), 50
            while True:
                await exporter.consume(logs(1))
                sent += 1
                await asyncio.sleep(0.05)
                if sinks[other].items(Signal.LOGS):
                    break
                assert time.monotonic() - left < 2, "still not at the other peer 2 s after its peer left"
            await exporter.shutdown()
            # shutdown flushed the queue: every log sent is at one of the two, once
            assert first.items(Signal.LOGS) + second.items(Signal.LOGS) == sent
            assert sinks[name].items(Signal.LOGS) >= 50 and sinks[other].items(Signal.LOGS) >= 1
    finally:
        await exporter.shutdown()
        await etcd.delete_prefix(f"/orasi/{region}/".encode())
        await etcd.close()
