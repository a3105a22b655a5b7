"""confluent-kafka's SchemaRegistryClient (a real client no one here wrote) against the registry
served by uvicorn, on PostgreSQL: register, fetch, look up, check compatibility, set levels."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from integration.registry.server import RegistryServer
from orasi_bridge.registry.schema import EXAMPLE

V1 = EXAMPLE
V2 = {  # drops the status code's constraint and stops requiring the route: BACKWARD-compatible
    "type": "object",
    "properties": {"attributes": {"type": "object", "properties": {"http.route": {"type": "string"}}}},
}
BAD = {  # requires a key V2's data may lack
    "type": "object",
    "properties": {
        "attributes": {"type": "object", "properties": {"peer": {"type": "string"}}, "required": ["peer"]}
    },
}


def schema(document: dict[str, object]) -> Schema:
    return Schema(json.dumps(document), "JSON")


@pytest.fixture
def client(pg_uri: str) -> Iterator[SchemaRegistryClient]:
    with RegistryServer(store=pg_uri) as server:
        client = SchemaRegistryClient({"url": server.url})
        yield client
        client.close()


def test_register_fetch_lookup_and_versions(client: SchemaRegistryClient) -> None:
    first = client.register_schema("spans.checkout", schema(V1))
    assert client.register_schema("spans.checkout", Schema(json.dumps(V1, indent=2), "JSON")) == first
    second = client.register_schema("spans.checkout", schema(V2))
    assert second != first
    assert client.get_subjects() == ["spans.checkout"]
    assert client.get_versions("spans.checkout") == [1, 2]
    latest = client.get_latest_version("spans.checkout")
    assert (latest.version, latest.schema_id, latest.schema.schema_type) == (2, second, "JSON")
    assert json.loads(latest.schema.schema_str) == V2
    assert json.loads(client.get_version("spans.checkout", 1).schema.schema_str) == V1
    client.clear_caches()
    fetched = client.get_schema(first)
    assert (json.loads(fetched.schema_str), fetched.schema_type) == (V1, "JSON")
    found = client.lookup_schema("spans.checkout", schema(V1))
    assert (found.version, found.schema_id) == (1, first)


def test_compatibility_is_checked_and_enforced(client: SchemaRegistryClient) -> None:
    client.register_schema("spans.checkout", schema(V1))
    client.register_schema("spans.checkout", schema(V2))
    assert client.test_compatibility("spans.checkout", schema(V2)) is True
    assert client.test_compatibility("spans.checkout", schema(BAD)) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("spans.checkout", schema(BAD))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert "#/properties/attributes/required: 'peer' is required" in refused.value.error_message


def test_levels_are_set_per_tenant_and_per_subject(client: SchemaRegistryClient) -> None:
    assert client.get_compatibility() == "BACKWARD"
    client.set_compatibility(level="FULL")
    assert client.get_compatibility() == "FULL"
    assert client.get_compatibility("spans.checkout") == "FULL"  # the tenant's applies
    client.register_schema("spans.checkout", schema(V1))
    client.set_compatibility("spans.checkout", "NONE")
    assert client.get_compatibility("spans.checkout") == "NONE"
    client.register_schema("spans.checkout", schema(BAD))  # NONE lets anything follow
    client.delete_config("spans.checkout")
    assert client.get_compatibility("spans.checkout") == "FULL"  # the tenant's again
    with pytest.raises(SchemaRegistryError) as refused:
        client.set_compatibility(level="SIDEWAYS")
    assert (refused.value.http_status_code, refused.value.error_code) == (422, 42203)
    assert "SIDEWAYS" in refused.value.error_message


def test_deletes_soft_then_permanent(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema("logs.api", schema({"properties": {"body": {"type": "string"}}}))
    assert client.delete_subject("logs.api") == [1]
    assert client.get_subjects() == []
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_latest_version("logs.api")
    assert missing.value.error_code == 40401
    assert client.delete_subject("logs.api", permanent=True) == [1]
    client.clear_caches()
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_schema(schema_id)
    assert gone.value.error_code == 40403


def test_other_schema_types_are_refused_with_a_clear_message(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(
            "spans.checkout", Schema('{"type": "record", "name": "x", "fields": []}', "AVRO")
        )
    assert refused.value.error_code == 42201
    assert "schemaType 'AVRO' is not supported" in refused.value.error_message
