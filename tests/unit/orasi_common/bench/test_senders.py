"""GrpcSender over TLS: the server verified against the given CA, refused under another CA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from orasi_common.bench.engine import Outcome, Payload
from orasi_common.bench.senders import GrpcSender
from orasi_common.pdata import Signal
from orasi_common.testing.certs import Authority

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Authority]]:
    """A TLS OTLP/gRPC trace server answering every Export with an empty (full) success."""
    ca = Authority.create("sender CA")
    issued = ca.issue(tmp_path, "server")
    server = grpc.aio.server()

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b""

    handler = grpc.unary_unary_rpc_method_handler(export)  # raw bytes in and out
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler}),)
    )
    credentials = grpc.ssl_server_credentials([(issued.key.read_bytes(), issued.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield port, ca
    await server.stop(None)


async def send(port: int, ca: Authority) -> Outcome:
    roots = ca.certificate.public_bytes(serialization.Encoding.PEM)
    sender = GrpcSender(
        f"127.0.0.1:{port}", Signal.TRACES, timeout=5, credentials=grpc.ssl_channel_credentials(roots)
    )
    try:
        return await sender(Payload(b"", 3))
    finally:
        await sender.close()


async def test_tls_sender_is_acknowledged_by_a_server_its_ca_signed(
    tls_server: tuple[int, Authority],
) -> None:
    port, ca = tls_server
    assert await send(port, ca) == Outcome(3)


async def test_tls_sender_refuses_a_server_of_another_ca(tls_server: tuple[int, Authority]) -> None:
    port, _ = tls_server
    assert await send(port, Authority.create("another CA")) == Outcome(0, 3, "UNAVAILABLE")
