"""Bridges sharing one registry (PostgreSQL + Redis): a change made through one is used by the
others within a second; and reads keep being answered while PostgreSQL cannot be reached, while
writes get 503."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.discovery.proxy import TcpProxy
from integration.registry.server import RegistryServer, bridge_config
from orasi_common.testing.service_process import ServiceProcess, start_on_free_ports

PROPAGATION = 1.0
"""Seconds within which every bridge uses a change (the issue's promise)."""


def document(*keys: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    section: dict[str, Any] = {"properties": {k: {"type": "string"} for k in keys}}
    if required:
        section["required"] = list(required)
    return {"properties": {"attributes": section}}


class Client:
    def __init__(self, url: str, tenant: str) -> None:
        self.url = url
        self.headers = {"X-Orasi-Tenant": tenant}

    def register(self, subject: str, doc: dict[str, Any]) -> httpx.Response:
        body = {"schema": json.dumps(doc), "schemaType": "JSON"}
        return httpx.post(
            f"{self.url}/subjects/{subject}/versions", json=body, headers=self.headers, timeout=10
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers, timeout=10)

    def put(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.put(f"{self.url}{path}", json=body, headers=self.headers, timeout=10)

    def compatible(self, subject: str, doc: dict[str, Any]) -> bool:
        body = {"schema": json.dumps(doc), "schemaType": "JSON"}
        url = f"{self.url}/compatibility/subjects/{subject}/versions/latest"
        answer = httpx.post(url, json=body, headers=self.headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["is_compatible"])


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """How long ``condition`` took to hold (fails past ``seconds``, polling every 20 ms)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def bridges(tmp_path: Path, pg_uri: str, redis_url: str) -> Iterator[tuple[str, str]]:
    """Two `orasi bridge` processes whose registries share ``pg_uri`` and Redis."""
    started: list[ServiceProcess] = []
    urls = []
    try:
        for name in ("a", "b"):

            def make(name: str = name) -> ServiceProcess:
                config = bridge_config(tmp_path / name, {"store": pg_uri, "redis": redis_url})
                make.endpoint = config["extensions"]["query_api"]["endpoint"]  # type: ignore[attr-defined]
                return ServiceProcess.from_config("bridge", config, tmp_path, label=f"bridge-{name}")

            started.append(start_on_free_ports(make))
            urls.append(f"http://{make.endpoint}/registry")  # type: ignore[attr-defined]
        yield urls[0], urls[1]
    finally:
        for process in started:
            process.stop()


def test_a_version_registered_through_one_bridge_is_used_by_the_other_within_a_second(
    bridges: tuple[str, str],
) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    a, b = Client(bridges[0], tenant), Client(bridges[1], tenant)
    assert a.register("spans.checkout", document("http.route")).status_code == 200
    assert b.get("/subjects/spans.checkout/versions/latest").json()["version"] == 1  # b has it cached
    needs_peer = document("http.route", "peer", required=("peer",))
    assert b.compatible("spans.checkout", needs_peer) is False
    # v2 requires "peer": a schema requiring it too is compatible with v2, not with v1
    assert a.put("/config/spans.checkout", {"compatibility": "NONE"}).status_code == 200
    assert a.register("spans.checkout", needs_peer).status_code == 200
    within(PROPAGATION, lambda: b.get("/subjects/spans.checkout/versions/latest").json()["version"] == 2)
    within(PROPAGATION, lambda: b.get("/config/spans.checkout").json()["compatibilityLevel"] == "NONE")
    # and back: a level set through b is enforced by a
    assert b.put("/config/spans.checkout", {"compatibility": "BACKWARD"}).status_code == 200
    within(PROPAGATION, lambda: a.get("/config/spans.checkout").json()["compatibilityLevel"] == "BACKWARD")
    assert b.compatible("spans.checkout", needs_peer) is True
    refused = a.register("spans.checkout", document("x", required=("x",)))
    assert refused.status_code == 409 and "'x' is required" in refused.json()["message"]
    assert b.get("/subjects").json() == ["spans.checkout"]


@pytest.fixture
def behind_proxy(pg_uri: str, redis_url: str) -> Iterator[tuple[RegistryServer, TcpProxy]]:
    proxy = TcpProxy(("127.0.0.1", 5432))
    uri = pg_uri.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    server = RegistryServer(store=uri, redis=redis_url)
    server.run(proxy.start)  # on the server's loop, before the registry opens its store
    with server:
        try:
            yield server, proxy
        finally:
            server.run(proxy.close)


def test_reads_keep_working_while_the_store_is_unreachable_and_writes_get_503(
    behind_proxy: tuple[RegistryServer, TcpProxy],
) -> None:
    server, proxy = behind_proxy
    tenant = f"t{uuid.uuid4().hex[:10]}"
    client = Client(server.url, tenant)
    schema_id = client.register("logs.api", document("k")).json()["id"]
    reads = [
        "/subjects",
        "/subjects/logs.api/versions",
        "/subjects/logs.api/versions/latest",
        f"/schemas/ids/{schema_id}",
        "/config",
        "/mode",
    ]
    before = {path: client.get(path).json() for path in reads}
    assert server.registry is not None
    assert server.registry.cached_latest(tenant, "logs.api") is not None
    proxy.cut()
    try:
        for path in reads:
            answer = client.get(path)
            assert (answer.status_code, answer.json()) == (200, before[path]), path
        refused = client.register("logs.api", document())
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_code"] == 50301
        assert "cannot be reached" in refused.json()["message"]
        assert refused.headers["Retry-After"] == "1"
        assert client.put("/config", {"compatibility": "FULL"}).status_code == 503
        latest = server.registry.cached_latest(tenant, "logs.api")
        assert latest is not None and latest.version == 1 and "k" in latest.schema.attributes.properties
        assert client.get("/subjects/logs.other/versions").status_code == 503  # held by no cache
    finally:
        proxy.restore()
    within(10, lambda: client.register("logs.api", document()).status_code == 200)  # drops "k"
    assert client.get("/subjects/logs.api/versions").json() == [1, 2]


def test_a_new_bridge_reads_from_redis_while_the_store_is_unreachable(
    behind_proxy: tuple[RegistryServer, TcpProxy], redis_url: str, pg_uri: str
) -> None:
    server, proxy = behind_proxy
    tenant = f"t{uuid.uuid4().hex[:10]}"
    client = Client(server.url, tenant)
    client.register("metrics.api", {"properties": {"metric_name": {"type": "string"}}})
    latest = client.get("/subjects/metrics.api/versions/latest").json()  # into Redis too
    with RegistryServer(store=pg_uri, redis=redis_url) as second:  # its memory is empty
        proxy.cut()
        try:
            second.run(_break_store(second))
            answer = Client(second.url, tenant).get("/subjects/metrics.api/versions/latest")
            assert (answer.status_code, answer.json()) == (200, latest)
        finally:
            proxy.restore()


def _break_store(server: RegistryServer) -> Callable[[], Any]:
    """Point the server's store at a port nobody listens on: only Redis can answer its reads."""

    async def work() -> None:
        from orasi_bridge.registry.store import Store
        from orasi_common.testing.service_process import free_port

        assert server.registry is not None
        server.registry.store.close()
        server.registry.store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/orasi_test")

    return work
