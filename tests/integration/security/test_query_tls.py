"""TLS on the bridge's query APIs over a real lake: REST (with its Jaeger and registry routes)
over HTTPS, Flight SQL over grpc+tls read by the ADBC Flight SQL driver, both mutual when a
client CA is set; and the admin port over HTTPS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import httpx
import pytest

from integration.flightsql.conftest import StartApi
from orasi_agent.factories import FACTORIES
from orasi_bridge.lake import LakeWriter
from orasi_common.config.model import ServiceConfig
from orasi_common.service import Service
from orasi_common.testing.certs import Authority, Issued
from orasi_common.testing.service_process import free_port

OPTION = "adbc.flight.sql.client_option."


def tls_files(tmp_path: Path) -> tuple[Path, Issued, Issued]:
    ca = Authority.create("query CA")
    return ca.write_ca(tmp_path / "ca.crt"), ca.issue(tmp_path, "server"), ca.issue(tmp_path, "client")


def client_context(ca_file: Path, client: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


def adbc_count(port: int, ca_file: Path, client: Issued | None) -> Any:
    options = {OPTION + "tls_root_certs": ca_file.read_text(), OPTION + "tls_override_hostname": "localhost"}
    if client is not None:
        options[OPTION + "mtls_cert_chain"] = client.cert.read_text()
        options[OPTION + "mtls_private_key"] = client.key.read_text()
    with (
        flightsql.connect(f"grpc+tls://127.0.0.1:{port}", db_kwargs=options, autocommit=True) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT count(*) AS n FROM spans")
        return cursor.fetchall()[0][0]


async def test_rest_and_flight_sql_over_mutual_tls(
    writer: LakeWriter, start_api: StartApi, tmp_path: Path
) -> None:
    ca_file, server, client = tls_files(tmp_path)
    api = await start_api(
        writer,
        tls={"cert_file": str(server.cert), "key_file": str(server.key), "client_ca_file": str(ca_file)},
    )
    base = f"https://localhost:{api.port}"

    def rest(path: str, client_cert: Issued | None) -> httpx.Response:
        with httpx.Client(verify=client_context(ca_file, client_cert), timeout=30) as http:
            if path == "/api/v1/query":
                return http.post(base + path, json={"sql": "SELECT count(*) AS n FROM spans"})
            return http.get(base + path)

    for path in ("/api/v1/query", "/api/services", "/registry/subjects"):
        answer = await asyncio.to_thread(rest, path, client)
        assert answer.status_code == 200, (path, answer.text)
        with pytest.raises(httpx.TransportError):  # no client certificate: no handshake
            await asyncio.to_thread(rest, path, None)
    with pytest.raises(httpx.TransportError):  # no plaintext
        await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{api.port}/api/services")

    assert api.flight_port is not None
    assert await asyncio.to_thread(adbc_count, api.flight_port, ca_file, client) == 0
    with pytest.raises(adbc_driver_manager.Error):
        await asyncio.to_thread(adbc_count, api.flight_port, ca_file, None)


async def test_the_admin_port_over_tls(tmp_path: Path) -> None:
    ca_file, server, _ = tls_files(tmp_path)
    port = free_port()
    config = ServiceConfig.model_validate(
        {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{free_port()}"}}}},
            "exporters": {"otlp": {"endpoint": "127.0.0.1:1", "tls": {"insecure": True}}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}},
                "telemetry": {
                    "admin": {
                        "endpoint": f"127.0.0.1:{port}",
                        "tls": {"cert_file": str(server.cert), "key_file": str(server.key)},
                    }
                },
            },
        }
    )
    service = Service("agent", config, FACTORIES)
    await service.start()
    try:

        def get(url: str) -> httpx.Response:
            return httpx.get(url, verify=client_context(ca_file, None), timeout=10)

        assert (await asyncio.to_thread(get, f"https://localhost:{port}/healthz")).status_code == 200
        with pytest.raises(httpx.TransportError):
            await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/healthz")
    finally:
        await service.shutdown()
