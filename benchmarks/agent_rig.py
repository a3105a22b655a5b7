"""The agent benchmark's rig: the sink process, the agent's configurations, and one phase's run.

    load generator ──Export(bytes)──▶ sink                        (baseline)
    load generator ──Export(bytes)──▶ orasi agent ──Export──▶ sink (agent)

* The sink (a ``spawn``-ed process) answers ``TraceService/Export`` with ``b""``. Sent to
  directly (the baselines) it does nothing else: every request holds ``spans_per_request``
  spans. Behind the agent it counts the spans it gets (generated data: the marker attribute,
  ``request.count(MARKER)``; corpus data: a native wire scan of the few large requests the
  agent forwards).
* The agent (``orasi agent``, a ``ServiceProcess``) runs as ``examples/agent.yaml`` configures
  it, or in the durable-pipeline shape for ``--wal``.
* ``Rig.run_load`` runs one generator process (``benchmarks.load.paced_main``) and samples the
  CPU and RSS of the watched processes over its measured window (``benchmarks.usage.sample``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing.connection
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.load import MARKER, MAX_MESSAGE, Paced, count_spans, paced_main, write_payloads
from benchmarks.processes import HOST, Processes, die_with_parent, free_port, pid_of, receive
from benchmarks.usage import sample
from orasi_common.testing.service_process import ServiceProcess

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def sink_main(
    ready: multiprocessing.connection.Connection, stats: Any, parent_pid: int, counting: str | int
) -> None:
    """A do-nothing OTLP/gRPC trace sink; ``stats`` = [requests, spans, bytes, largest request].

    ``counting``: spans per request (a number: nothing is read), "marker" or "scan"."""
    die_with_parent(parent_pid)
    asyncio.run(_sink(ready, stats, counting))


async def _sink(ready: multiprocessing.connection.Connection, stats: Any, counting: str | int) -> None:
    import grpc

    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.so_reuseport", 0)]
    )

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        stats[0] += 1
        if isinstance(counting, int):
            stats[1] += counting
        elif counting == "marker":
            stats[1] += request.count(MARKER)
        else:
            stats[1] += count_spans(request)
        stats[2] += len(request)
        if len(request) > stats[3]:
            stats[3] = len(request)
        return b""

    handler = grpc.unary_unary_rpc_method_handler(export)  # no (de)serializers: raw bytes
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler}),)
    )
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    ready.send({"port": port})
    await server.wait_for_termination()


@dataclass
class Sink:
    process: multiprocessing.process.BaseProcess
    port: int
    stats: Any

    @property
    def spans(self) -> int:
        return int(self.stats[1])

    def snapshot(self) -> dict[str, int]:
        return {
            "requests": int(self.stats[0]),
            "spans": int(self.stats[1]),
            "bytes": int(self.stats[2]),
            "largest_request_bytes": int(self.stats[3]),
        }

    def settle(self, expected: int, timeout: float) -> dict[str, int]:
        """Wait until the sink has ``expected`` spans, or its count stops moving for a second."""
        deadline = time.monotonic() + timeout
        last, last_change = self.spans, time.monotonic()
        while time.monotonic() < deadline and self.spans < expected:
            time.sleep(0.05)
            if self.spans != last:
                last, last_change = self.spans, time.monotonic()
            elif time.monotonic() - last_change > 1.0:
                break
        return self.snapshot()


@dataclass
class Agent:
    service: ServiceProcess
    port: int

    def metrics(self) -> dict[str, float]:
        """The agent's own counters of accepted and sent spans (from its /metrics)."""
        names = (
            "orasi_receiver_accepted_items_total",
            "orasi_exporter_sent_items_total",
            "orasi_exporter_send_failed_items_total",
            "orasi_receiver_refused_items_total",
        )
        return {
            name.removeprefix("orasi_").removesuffix("_total"): self.service.metric(name, signal="traces")
            for name in names
        }


@dataclass
class Rig:
    args: argparse.Namespace
    payloads: list[bytes]
    spans_per_request: int
    workdir: Path
    processes: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.workdir)
        self.payload_file = self.workdir / "payloads.bin"
        write_payloads(self.payload_file, self.payloads)

    def start_sink(self, *, count: bool = True) -> Sink:
        """A sink; ``count``: count the spans it gets (behind the agent), else take every
        request to hold ``spans_per_request`` (sent to directly: it does nothing)."""
        stats = self.processes.mp.RawArray("q", 4)
        receive_end, send_end = self.processes.mp.Pipe(duplex=False)
        counting: str | int = self.spans_per_request
        if count:
            counting = "marker" if self.args.data == "generated" else "scan"
        process = self.processes.spawn(sink_main, send_end, stats, os.getpid(), counting, name="bench-sink")
        send_end.close()
        return Sink(process, int(receive(receive_end, process, 30)["port"]), stats)

    def start_agent(
        self, sink_port: int, tag: str, queue: str | None = None, tls: dict[str, Any] | None = None
    ) -> Agent:
        """An agent as examples/agent.yaml batches; with ``queue`` ("memory" or "wal") the
        durable-pipeline shape instead: no batch processor, the exporter's queue in memory or in
        a write-ahead log (acknowledged after fsync); ``tls``: its OTLP/gRPC receiver's ``tls``."""
        port = free_port()
        text = AGENT_CONFIG.format(
            host=HOST,
            port=port,
            admin_port=free_port(),
            sink_port=sink_port,
            compression=self.args.compression,
        )
        config = yaml.safe_load(text)
        if tls is not None:
            config["receivers"]["otlp"]["protocols"]["grpc"]["tls"] = tls
        if queue is not None:  # the durable pipeline shape: no batch processor before the queue
            del config["processors"]
            del config["service"]["pipelines"]["traces"]["processors"]
            storage = {"storage": {"directory": str(self.workdir / f"wal-{tag}"), "durable": True}}
            config["exporters"]["otlp"]["sending_queue"] = {
                "num_consumers": 8,
                "max_size_mib": 256,
                "on_full": "block",
                **(storage if queue == "wal" else {}),
            }
        return Agent(self.processes.service("agent", config, f"agent-{tag}"), port)

    def stop_agent(self, agent: Agent) -> int | None:
        """Stop gracefully (it flushes whatever is still batched); its exit code."""
        self.processes.stop(agent.service, grace=15)
        return agent.service.returncode

    def run_load(
        self,
        target_port: int,
        watch: dict[str, int],
        *,
        duration: float,
        rate: float | None,
        profile_tag: str | None = None,
        ca_file: Path | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run one generator process; sample ``watch`` (name → pid) during its window; with
        ``ca_file`` it sends over TLS, verifying the target against that CA.

        With ``--profile DIR`` and a ``profile_tag``, py-spy records the agent over the window.
        """
        options = Paced(
            target=f"{HOST}:{target_port}",
            payloads=self.payload_file,
            spans_per_request=self.spans_per_request,
            duration=duration,
            warmup=self.args.warmup,
            concurrency=self.args.concurrency,
            rate=rate,
            ca_file=ca_file,
        )
        receive_end, send_end = self.processes.mp.Pipe(duplex=False)
        process = self.processes.spawn(paced_main, send_end, options, os.getpid(), name="bench-load")
        send_end.close()
        spy: subprocess.Popen[bytes] | None = None
        try:
            window_start, window_end = receive(receive_end, process, 30)["window"]
            if self.args.profile and profile_tag and "agent" in watch:
                spy = self._start_profiler(watch["agent"], window_start, window_end, profile_tag)
            usage = sample(
                {"generator": pid_of(process), **watch}, window_start, window_end, rss_of=set(watch)
            )
            result = receive(receive_end, process, options.timeout + 30 + window_end - time.monotonic())
        finally:
            self.processes.stop(process)
            if spy is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(30)
                self.processes.stop(spy)
        return result, usage

    def _start_profiler(self, pid: int, start: float, end: float, tag: str) -> subprocess.Popen[bytes] | None:
        """``py-spy record`` of ``pid`` from ``start`` to ``end`` (collapsed stacks; inflates CPU)."""
        spy = shutil.which("py-spy")
        if spy is None:
            print("  (--profile: py-spy is not installed; pip install py-spy)", flush=True)
            return None
        if (delay := start - time.monotonic()) > 0:
            time.sleep(delay)
        self.args.profile.mkdir(parents=True, exist_ok=True)
        seconds = str(max(1, round(end - start)))
        out = str(self.args.profile / f"agent-{tag}.txt")
        argv = [spy, "record", "--pid", str(pid), "--duration", seconds, "--rate", "100"]
        return self.processes.popen([*argv, "--format", "raw", "--output", out], f"py-spy-{tag}.log")

    def finish_agent_phase(
        self, name: str, load: dict[str, Any], usage: dict[str, Any], sink: Sink, agent: Agent
    ) -> dict[str, Any]:
        expected = load["acked_requests_total"] * self.spans_per_request
        received = sink.settle(expected, timeout=10)
        own = agent.metrics()
        exit_code = self.stop_agent(agent)
        after_shutdown = sink.snapshot()
        verification = {
            "acked_by_agent_spans_total": expected,
            "sink_spans_before_shutdown": received["spans"],
            "sink_spans_after_shutdown": after_shutdown["spans"],
            "sink_requests": after_shutdown["requests"],
            "sink_bytes": after_shutdown["bytes"],
            "sink_largest_request_bytes": after_shutdown["largest_request_bytes"],
            "agent_metrics": own,
            "agent_exit_code": exit_code,
        }
        return phase(name, load, usage, verification)


def phase(
    name: str, load: dict[str, Any], usage: dict[str, Any], verification: dict[str, Any]
) -> dict[str, Any]:
    requests = load["acked_requests_in_window"]
    spans_per_s = requests * load["spans_per_request"] / load["window_s"]
    receiver = usage.get("agent") or usage.get("sink") or {}
    per_request = (
        1e4 * receiver["cpu_pct_avg"] * load["window_s"] / requests if requests and receiver else None
    )
    return {
        "phase": name,
        "spans_per_s": round(spans_per_s),
        "requests_per_s": round(requests / load["window_s"], 1),
        # CPU the receiving process (agent, or the sink when it is sent to directly) spent per
        # request: less sensitive to other load than spans/s, which depends on CPU it was given.
        "receiver_cpu_us_per_request": round(per_request) if per_request is not None else None,
        "load": load,
        "usage": usage,
        "verification": verification,
    }


AGENT_CONFIG = """\
# Written by benchmarks/agent_throughput.py: examples/agent.yaml's processors and exporter, on
# loopback ports, with the exporter's queue in memory (--wal measures the write-ahead log).
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{port}
        max_recv_msg_size_mib: 4
processors:
  memory_limiter:
    check_interval: 1
    limit_mib: 400
    spike_limit_mib: 80
  resource:
    detect: true
    kubernetes_mode: node
  batch:
    timeout: 0.2
    send_batch_size: 8192
    send_batch_size_mib: 3
    send_batch_max_size: 16384
exporters:
  otlp:
    endpoint: {host}:{sink_port}
    tls:
      insecure: true
    compression: {compression}
    timeout: 5
    sending_queue:
      num_consumers: 4
      max_size_mib: 64
      on_full: block
service:
  telemetry:
    logs:
      level: info
    admin:
      endpoint: {host}:{admin_port}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, resource, batch]
      exporters: [otlp]
"""
