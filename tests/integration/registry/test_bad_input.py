"""Bad input to the registry's REST API: each gets a Confluent error with a clear message, and
the server keeps answering."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator

import httpx
import pytest

from integration.registry.server import RegistryServer
from orasi_bridge.registry.api import MEDIA_TYPE


@pytest.fixture
def server(pg_uri: str) -> Iterator[RegistryServer]:
    with RegistryServer(store=pg_uri) as started:
        yield started


def post(url: str, body: bytes | dict[str, object], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={"Content-Type": MEDIA_TYPE, **headers}, timeout=30)


def register(server: RegistryServer, document: object, subject: str = "spans.checkout") -> httpx.Response:
    return post(
        f"{server.url}/subjects/{subject}/versions", {"schema": json.dumps(document), "schemaType": "JSON"}
    )


def assert_error(response: httpx.Response, status: int, code: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["error_code"] == code
    for word in words:
        assert word in body["message"], body["message"]


def test_a_body_that_is_not_json(server: RegistryServer) -> None:
    assert_error(post(f"{server.url}/subjects/spans.a/versions", b"{nope"), 400, 400, "not valid JSON")


def test_a_schema_that_is_not_json(server: RegistryServer) -> None:
    response = post(f"{server.url}/subjects/spans.a/versions", {"schema": "{nope", "schemaType": "JSON"})
    assert_error(response, 422, 42201, "Invalid schema", "not valid JSON")


def test_a_schema_outside_the_subset_names_the_path(server: RegistryServer) -> None:
    response = register(server, {"properties": {"attributes": {"properties": {"k": {"minLength": 2}}}}})
    assert_error(response, 422, 42201, "#/properties/attributes/properties/k/minLength", "not in the subset")


def test_a_subject_outside_the_naming_scheme(server: RegistryServer) -> None:
    assert_error(register(server, {}, "checkout-value"), 422, 42201, "spans, logs or metrics")


def test_an_unknown_level(server: RegistryServer) -> None:
    response = httpx.put(f"{server.url}/config", json={"compatibility": "SIDEWAYS"}, timeout=10)
    assert_error(response, 422, 42203, "'SIDEWAYS' is not a compatibility level")
    response = httpx.put(f"{server.url}/config/spans.a", json={"compatibility": None}, timeout=10)
    assert_error(response, 422, 42203)


def test_not_found_answers(server: RegistryServer) -> None:
    assert_error(
        httpx.get(f"{server.url}/subjects/spans.none/versions", timeout=10), 404, 40401, "spans.none"
    )
    assert register(server, {}).status_code == 200
    assert_error(httpx.get(f"{server.url}/subjects/spans.checkout/versions/7", timeout=10), 404, 40402)
    assert_error(httpx.get(f"{server.url}/subjects/spans.checkout/versions/x", timeout=10), 422, 42202)
    assert_error(httpx.get(f"{server.url}/schemas/ids/999999", timeout=10), 404, 40403)
    lookup = post(f"{server.url}/subjects/spans.checkout", {"schema": '{"type": "object"}'})
    assert_error(lookup, 404, 40403)


def test_a_10_mib_document_is_refused_and_the_server_stays_up(server: RegistryServer) -> None:
    huge = {
        "properties": {
            "attributes": {"properties": {f"k{i:07d}": {"type": "string"} for i in range(400_000)}}
        }
    }
    body = json.dumps({"schema": json.dumps(huge), "schemaType": "JSON"}).encode()
    assert len(body) > 10 * 2**20
    assert_error(post(f"{server.url}/subjects/spans.a/versions", body), 413, 413, "over the registry's limit")
    # chunked, without a Content-Length: refused while reading
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    response = httpx.post(f"{server.url}/subjects/spans.a/versions", content=chunks, timeout=30)
    assert_error(response, 413, 413, "over the registry's limit")
    assert httpx.get(f"{server.url}/subjects", timeout=10).json() == []


def test_read_only_mode_refuses_writes(server: RegistryServer) -> None:
    assert httpx.put(f"{server.url}/mode", json={"mode": "READONLY"}, timeout=10).json() == {
        "mode": "READONLY"
    }
    assert_error(register(server, {}), 422, 42205, "READONLY")
    assert_error(httpx.put(f"{server.url}/mode", json={"mode": "IMPORT"}, timeout=10), 422, 42204)
    httpx.put(f"{server.url}/mode", json={"mode": "READWRITE"}, timeout=10)
    assert register(server, {}).status_code == 200


def test_concurrent_registrations_over_http_get_distinct_versions(server: RegistryServer) -> None:
    server.run(_set_none(server))  # every schema may follow every other
    documents = [
        {"properties": {"attributes": {"properties": {f"k{n}": {"type": "string"}}}}} for n in range(16)
    ]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda d: register(server, d), documents + documents))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    ids = [a.json()["id"] for a in answers]
    assert ids[:16] == ids[16:]  # the same schema twice: the same id
    assert httpx.get(f"{server.url}/subjects/spans.checkout/versions", timeout=10).json() == list(
        range(1, 17)
    )


def test_tenants_are_kept_apart(server: RegistryServer) -> None:
    response = post(f"{server.url}/subjects/spans.a/versions", {"schema": "{}"}, **{"X-Orasi-Tenant": "acme"})
    assert response.status_code == 200
    assert httpx.get(f"{server.url}/subjects", timeout=10).json() == []
    acme = httpx.get(f"{server.url}/subjects", headers={"X-Orasi-Tenant": "acme"}, timeout=10)
    assert acme.json() == ["spans.a"]
    assert_error(httpx.get(f"{server.url}/schemas/ids/{response.json()['id']}", timeout=10), 404, 40403)


def _set_none(server: RegistryServer):  # type: ignore[no-untyped-def]
    async def work() -> None:
        assert server.registry is not None
        await server.registry.set_compatibility("default", None, "NONE")

    return lambda: work()
