"""Syslog over TLS (RFC 5425) into the `syslog` receiver: Debian's rsyslog (its gtls stream driver)
forwards a file with octet counting over TLS and every line arrives; a client that trusts another
CA fails its handshake while the receiver keeps serving; a rotated certificate is served to new
connections without a restart."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from integration.otap_data import eventually
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Kind
from orasi_common.receivers import syslog
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.certs import Authority
from orasi_common.testing.service_process import stop_process
from tests.unit.doubles import RecordingConsumer, make_settings

LINES = 50


def bodies(consumer: RecordingConsumer) -> list[str]:
    found = []
    for batch in consumer.batches:
        request = ExportLogsServiceRequest.FromString(batch.raw)
        found.extend(
            r.body.string_value
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        )
    return found


def served_name(port: int, ca: Path) -> str:
    """The common name of the certificate the receiver presents to a new connection."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        certificate = tls.getpeercert()
    assert certificate is not None
    return next(value for entry in certificate["subject"] for key, value in entry if key == "commonName")


async def test_rsyslog_over_tls_a_wrong_ca_and_a_rotation(tmp_path: Path) -> None:
    binary = shutil.which("rsyslogd")
    assert binary, "Debian's rsyslog is not installed (scripts/test-packages.sh installs it)"
    authority = Authority.create("syslog-ca")
    ca = authority.write_ca(tmp_path / "ca.crt")
    issued = authority.issue(tmp_path, "syslog-1")
    consumer = RecordingConsumer()
    config = syslog.Config.model_validate(
        {
            "tcp": {
                "endpoint": "127.0.0.1:0",
                "tls": {"cert_file": str(issued.cert), "key_file": str(issued.key), "reload_interval": 0.2},
            }
        }
    )
    receiver = syslog.FACTORY.create(
        make_settings("syslog", Kind.RECEIVER, Metrics("gateway")), config, {Signal.LOGS: consumer}
    )
    await receiver.start()
    try:
        port = receiver.tcp_port
        run = uuid.uuid4().hex[:12]
        source = tmp_path / "app.log"
        source.write_text("".join(f"tls {run} {i}\n" for i in range(LINES)))
        rsyslog_conf = tmp_path / "rsyslog.conf"
        rsyslog_conf.write_text(
            f'global(workDirectory="{tmp_path}" DefaultNetstreamDriverCAFile="{ca}")\n'
            'module(load="imfile")\n'
            f'input(type="imfile" File="{source}" Tag="shop" Severity="info" Facility="local2")\n'
            f'*.* action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" '
            'StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid" '
            'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")\n'
        )
        argv = [binary, "-n", "-f", str(rsyslog_conf), "-i", str(tmp_path / "rsyslog.pid")]
        with (tmp_path / "rsyslog.log").open("wb") as log:
            rsyslog = await asyncio.to_thread(
                subprocess.Popen, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            await eventually(lambda: consumer.items >= LINES, 60, f"{LINES} lines from rsyslog over TLS")
        finally:
            await asyncio.to_thread(stop_process, rsyslog, 15)
        assert sorted(bodies(consumer)) == sorted(f"tls {run} {i}" for i in range(LINES))

        # A client that trusts another CA: its handshake fails; the receiver keeps serving.
        other = Authority.create("another-ca").write_ca(tmp_path / "other.crt")
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(served_name, port, other)
        assert await asyncio.to_thread(served_name, port, ca) == "syslog-1"

        # cert-manager rotates the files: new connections get the new certificate.
        (tmp_path / "next").mkdir()
        rotated = authority.issue(tmp_path / "next", "syslog-2")
        shutil.copy(rotated.key, issued.key)
        shutil.copy(rotated.cert, issued.cert)
        deadline = time.monotonic() + 10
        while (name := await asyncio.to_thread(served_name, port, ca)) != "syslog-2":
            assert time.monotonic() < deadline, f"still serving {name} 10 s after the rotation"
            await asyncio.sleep(0.1)
    finally:
        await receiver.shutdown()
