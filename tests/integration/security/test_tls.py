"""TLS between real processes: agent → gateway over mutual TLS into a real bridge; clients without
a certificate refused; an expired certificate, a wrong CA and a wrong host name each reported by
the exporter as such; certificates rotated on disk while a sender keeps sending."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from fault.harness import TRACES, forwarder_config

from integration.receivers.conftest import Processes, wait_rows
from orasi_common.testing.certs import Authority, Issued
from orasi_common.testing.service_process import ServiceProcess, free_port, free_ports

RELOAD_INTERVAL = 0.2


@dataclass
class Pki:
    directory: Path
    ca: Authority
    ca_file: Path
    server: Issued
    client: Issued

    def server_tls(self, *, mutual: bool) -> dict[str, Any]:
        section: dict[str, Any] = {
            "cert_file": str(self.server.cert),
            "key_file": str(self.server.key),
            "reload_interval": RELOAD_INTERVAL,
        }
        if mutual:
            section["client_ca_file"] = str(self.ca_file)
        return section

    def client_tls(self, **extra: Any) -> dict[str, Any]:
        return {
            "ca_file": str(self.ca_file),
            "cert_file": str(self.client.cert),
            "key_file": str(self.client.key),
            **extra,
        }


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = Authority.create("orasi test CA")
    return Pki(
        directory,
        ca,
        ca.write_ca(directory / "ca.crt"),
        ca.issue(directory, "server"),
        ca.issue(directory, "client", hosts=("agent.test",)),
    )


def gateway_with_tls(processes: Processes, pki: Pki, upstream: str, *, mutual: bool) -> ServiceProcess:
    """A gateway (durable queue) whose OTLP gRPC and HTTP receivers serve TLS only."""
    config = forwarder_config(upstream, free_ports(), wal_dir=processes.workdir / f"gw-{uuid.uuid4().hex}")
    for protocol in ("grpc", "http"):
        config["receivers"]["otlp"]["protocols"][protocol]["tls"] = pki.server_tls(mutual=mutual)
    return processes._add("gateway", config).start()


def agent_to(processes: Processes, upstream: str, tls: dict[str, Any], **options: Any) -> ServiceProcess:
    config = forwarder_config(upstream, free_ports(), wal_dir=processes.workdir / f"agent-{uuid.uuid4().hex}")
    config["exporters"]["otlp"]["tls"] = tls
    config["exporters"]["otlp"].update(options)
    return processes._add("agent", config).start()


def spans_body(run: str, start: int, count: int) -> dict[str, Any]:
    now = time.time_ns()
    spans = [
        {
            "traceId": uuid.uuid4().hex,
            "spanId": os.urandom(8).hex(),
            "name": f"op {start + i}",
            "startTimeUnixNano": str(now),
            "endTimeUnixNano": str(now + 1000),
            "attributes": [{"key": "run", "value": {"stringValue": run}}],
        }
        for i in range(count)
    ]
    return {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


def count_rows(bridge: ServiceProcess, run: str, expected: int) -> int:
    rows = wait_rows(
        bridge,
        f"SELECT count(DISTINCT name) AS n FROM spans WHERE attributes['run'] = '{run}'",
        lambda found: bool(found) and found[0]["n"] >= expected,
    )
    return int(rows[0]["n"])


def export_over_grpc(endpoint: str, credentials: grpc.ChannelCredentials) -> None:
    """One empty-ish OTLP traces export over a fresh TLS channel (raises grpc.RpcError)."""
    with grpc.secure_channel(endpoint, credentials) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(b"", timeout=10)


def test_agent_to_gateway_over_mutual_tls_end_to_end(processes: Processes, pki: Pki) -> None:
    bridge = processes.bridge_with({}, TRACES)
    gateway = gateway_with_tls(processes, pki, bridge.grpc_endpoint, mutual=True)
    # The agent dials the gateway's IP address and checks the certificate for "localhost".
    agent = agent_to(processes, gateway.grpc_endpoint, pki.client_tls(server_name_override="localhost"))
    run = uuid.uuid4().hex
    for start in range(0, 40, 10):
        response = httpx.post(agent.http_url + "/v1/traces", json=spans_body(run, start, 10), timeout=30)
        assert response.status_code == 200, response.text
    assert count_rows(bridge, run, 40) == 40

    roots = pki.ca_file.read_bytes()
    with pytest.raises(grpc.RpcError) as refused:  # mutual TLS: no client certificate, no export
        export_over_grpc(gateway.grpc_endpoint, grpc.ssl_channel_credentials(roots))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
    export_over_grpc(
        gateway.grpc_endpoint,
        grpc.ssl_channel_credentials(roots, pki.client.key.read_bytes(), pki.client.cert.read_bytes()),
    )

    https = gateway.http_url.replace("http://", "https://") + "/v1/traces"
    with pytest.raises(httpx.TransportError):
        httpx.post(https, json=spans_body(run, 100, 1), verify=ssl_context(pki), timeout=10)
    with_cert = ssl_context(pki)
    with_cert.load_cert_chain(pki.client.cert, pki.client.key)
    assert httpx.post(https, json=spans_body(run, 100, 1), verify=with_cert, timeout=10).status_code == 200
    with pytest.raises(httpx.TransportError):  # and no plaintext at all
        httpx.post(gateway.http_url + "/v1/traces", json=spans_body(run, 101, 1), timeout=10)
    assert count_rows(bridge, run, 41) == 41


def ssl_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_file))


class TlsPeer:
    """An in-process gRPC server presenting ``issued`` (the handshake is all these tests need)."""

    def __init__(self, issued: Issued) -> None:
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        credentials = grpc.ssl_server_credentials([(issued.key.read_bytes(), issued.cert.read_bytes())])
        self.endpoint = f"127.0.0.1:{self.server.add_secure_port(f'127.0.0.1:{free_port()}', credentials)}"
        self.server.start()


@pytest.fixture
def peers() -> Iterator[list[TlsPeer]]:
    made: list[TlsPeer] = []
    try:
        yield made
    finally:
        for peer in made:
            peer.server.stop(0)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", "the server's certificate has expired"),
        ("wrong_ca", "is not signed by a CA in tls.ca_file (a wrong CA)"),
        ("wrong_host", "does not name the host dialled"),
    ],
)
def test_the_exporter_says_which_tls_check_failed(
    processes: Processes, pki: Pki, peers: list[TlsPeer], case: str, expected: str
) -> None:
    issued = {
        "expired": lambda: pki.ca.issue(pki.directory, "expired", expired=True),
        "wrong_ca": lambda: Authority.create("another CA").issue(pki.directory, "foreign"),
        "wrong_host": lambda: pki.ca.issue(pki.directory, "elsewhere", hosts=("elsewhere.example",)),
    }[case]()
    peer = TlsPeer(issued)
    peers.append(peer)
    agent = agent_to(
        processes,
        peer.endpoint,
        {"ca_file": str(pki.ca_file)},
        sending_queue={"enabled": False},
        retry_on_failure={"enabled": False},
    )
    response = httpx.post(agent.http_url + "/v1/traces", json=spans_body("x", 0, 1), timeout=30)
    assert response.status_code == 503, response.text
    assert expected in response.json()["message"], response.text
    logged = [r for r in agent.logged("Exporting a batch failed; the error goes back to the sender.")]
    assert logged and expected in logged[0]["error"], agent.log_text()[-3000:]


def served_serial(endpoint: str, pki: Pki, alpn: str) -> int:
    """The serial number of the certificate a new TLS connection to ``endpoint`` is shown."""
    host, port = endpoint.rsplit(":", 1)
    context = ssl_context(pki)
    context.set_alpn_protocols([alpn])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def replace_server_cert(pki: Pki) -> int:
    """New server certificate and key, moved into place the way a Secret update does; its serial."""
    fresh = pki.ca.issue(pki.directory / "next", "server")
    os.replace(fresh.key, pki.server.key)
    os.replace(fresh.cert, pki.server.cert)
    return int(x509.load_pem_x509_certificate(pki.server.cert.read_bytes()).serial_number)


def test_certificates_rotate_under_load_without_losing_anything(processes: Processes, pki: Pki) -> None:
    bridge = processes.bridge_with({}, TRACES)
    gateway = gateway_with_tls(processes, pki, bridge.grpc_endpoint, mutual=False)
    agent = agent_to(processes, gateway.grpc_endpoint, {"ca_file": str(pki.ca_file)})
    gateway_https = gateway.http_url.removeprefix("http://")
    before = served_serial(gateway.grpc_endpoint, pki, "h2")
    assert served_serial(gateway_https, pki, "http/1.1") == before

    run = uuid.uuid4().hex
    acknowledged = 0
    stop = threading.Event()
    failures: list[str] = []

    def send() -> None:
        nonlocal acknowledged
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                answer = client.post(agent.http_url + "/v1/traces", json=spans_body(run, acknowledged, 1))
                if answer.status_code == 200:
                    acknowledged += 1
                else:
                    failures.append(answer.text)
                time.sleep(0.01)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(1.0)  # sending through the old certificate
        after = replace_server_cert(pki)
        deadline = time.monotonic() + 10
        while served_serial(gateway.grpc_endpoint, pki, "h2") != after:
            assert time.monotonic() < deadline, "new gRPC connections still get the old certificate"
            time.sleep(RELOAD_INTERVAL)
        assert served_serial(gateway_https, pki, "http/1.1") == after
        sent_at_rotation = acknowledged
        time.sleep(1.0)  # and through the new one
    finally:
        stop.set()
        sender.join(30)
    assert acknowledged > sent_at_rotation > 0
    assert not failures, failures[:3]
    # New connections from the agent work too: a second agent, started after the rotation.
    late = agent_to(processes, gateway.grpc_endpoint, {"ca_file": str(pki.ca_file)})
    assert (
        httpx.post(
            late.http_url + "/v1/traces", json=spans_body(run, acknowledged, 1), timeout=30
        ).status_code
        == 200
    )
    assert count_rows(bridge, run, acknowledged + 1) == acknowledged + 1
