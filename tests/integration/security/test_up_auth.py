"""`orasi up --auth`, a real process: it prints a first token once; the OpenTelemetry SDK's OTLP
exporter with that token lands its spans in the lake, read back with the token; without one (or
with a bad one) the agent, the gateway, the bridge and the query API refuse (401 /
UNAUTHENTICATED); `orasi tokens` works on the local SQLite store while it runs; a restart makes no
second first token and forwards with the same token file."""

from __future__ import annotations

import re
import stat
import time
import uuid
from pathlib import Path

import grpc
import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from integration.security.test_tokens import EXPORT, bearer, query, rows_of, spans, tokens_in
from orasi_common.testing.service_process import start_on_free_ports
from orasi_common.testing.up_process import READY, UpProcess

TOKEN = re.compile(r"^\s+(orasi_[0-9a-f]{16}_\S+)$", re.MULTILINE)


def banner(up: UpProcess) -> str:
    """The log of the current start, once its ready banner is in it."""
    deadline = time.monotonic() + 60
    while READY not in (text := up.log_of()):
        assert time.monotonic() < deadline and up.running(), text
        time.sleep(0.05)
    return text


def tokens(up: UpProcess, *args: str) -> str:
    return tokens_in(f"sqlite:///{up.data_dir / 'tokens.db'}", *args)


def send_with_sdk(up: UpProcess, service: str, token: str) -> int:
    """Spans from the SDK's OTLP/gRPC exporter carrying ``token``; how many."""
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{up.ports['agent.grpc']}",
        insecure=True,
        timeout=10,
        headers={"authorization": f"Bearer {token}"},
    )
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("orasi.security.up")
    with tracer.start_as_current_span("checkout"), tracer.start_as_current_span("charge card"):
        pass
    assert provider.force_flush(10_000)
    provider.shutdown()
    return 2


def grpc_code(endpoint: str, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    with grpc.insecure_channel(endpoint) as channel:
        try:
            request = spans("refused", 1).SerializeToString()
            channel.unary_unary(EXPORT)(request, metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_orasi_up_with_auth(tmp_path: Path) -> None:
    up = start_on_free_ports(lambda: UpProcess.on_free_ports(tmp_path, args=["--auth"]), 3, 90)
    with up:
        first_banner = banner(up)
        found = TOKEN.findall(first_banner)
        assert len(found) == 1, first_banner
        token = found[0]
        assert f"sqlite:///{up.data_dir / 'tokens.db'}" in first_banner
        forwarding = up.data_dir / "auth" / "forwarding.token"
        assert stat.S_IMODE(forwarding.stat().st_mode) == 0o600
        assert forwarding.read_text().strip() not in up.log_text()

        # No token, or a bad one: refused by every receiver and by the query API.
        request = spans("refused", 1).SerializeToString()
        agent_http = f"http://127.0.0.1:{up.ports['agent.http']}/v1/traces"
        protobuf = {"content-type": "application/x-protobuf"}
        assert httpx.post(agent_http, content=request, headers=protobuf, timeout=30).status_code == 401
        for name in ("agent.grpc", "gateway.grpc", "bridge.grpc"):
            endpoint = f"127.0.0.1:{up.ports[name]}"
            assert grpc_code(endpoint, None) == grpc.StatusCode.UNAUTHENTICATED, name
            assert grpc_code(endpoint, token + "x") == grpc.StatusCode.UNAUTHENTICATED, name
        assert query(up, "SELECT 1").status_code == 401

        # The SDK's exporter with the first token: its spans land, read back with the token.
        service = f"up-auth-{uuid.uuid4().hex[:8]}"
        sent = send_with_sdk(up, service, token)
        sql = f"SELECT tenant, count(*) FROM spans WHERE service_name = '{service}' GROUP BY tenant"
        assert rows_of(up, sql, token, 1) == [["default", sent]]

        # `orasi tokens` on the local store while orasi up runs: a tenant of its own, then revoked.
        listed = tokens(up, "list")
        assert "orasi up: the first token" in listed and token not in listed
        acme = tokens(up, "create", "--tenant", "acme", "--scope", "ingest", "--scope", "query")
        acme_service = f"up-acme-{uuid.uuid4().hex[:8]}"
        send_with_sdk(up, acme_service, acme)
        acme_sql = "SELECT tenant, service_name, count(*) FROM spans GROUP BY 1, 2"
        assert rows_of(up, acme_sql, acme, 1) == [["acme", acme_service, 2]]  # acme's rows only
        tokens(up, "revoke", acme)
        deadline = time.monotonic() + 30  # refused within the extension's cache_seconds
        while query(up, "SELECT 1", **bearer(acme)).status_code != 401:
            assert time.monotonic() < deadline, "a revoked token still reads"
            time.sleep(0.2)

        # A restart: no second first token; the forwarding token still carries the data.
        assert up.terminate() == 0, up.log_text()
        up.start(ready_timeout=90)
        second_banner = banner(up)
        assert TOKEN.findall(second_banner) == [] and "orasi tokens list" in second_banner
        again = f"up-again-{uuid.uuid4().hex[:8]}"
        send_with_sdk(up, again, token)
        again_sql = f"SELECT tenant, count(*) FROM spans WHERE service_name = '{again}' GROUP BY tenant"
        assert rows_of(up, again_sql, token, 1) == [["default", 2]]
        assert up.terminate() == 0, up.log_text()
        assert "Traceback" not in up.log_text()
