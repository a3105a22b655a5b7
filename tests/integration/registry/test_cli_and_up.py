"""`orasi up` serves the registry (SQLite in its data directory, the in-process cache), and
`orasi schema` drives it from the command line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from orasi_common.testing.service_process import orasi_command
from orasi_common.testing.up_process import UpProcess

V1 = {"properties": {"attributes": {"properties": {"http.route": {"type": "string"}}}}}
NEEDS_PEER = {
    "properties": {"attributes": {"properties": {"peer": {"type": "string"}}, "required": ["peer"]}}
}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    process = UpProcess.launch(tmp_path_factory.mktemp("up"))
    try:
        yield process
    finally:
        process.stop()


def schema_cli(up: UpProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*orasi_command(), "schema", *args, "--url", up.query_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_orasi_up_serves_the_registry_from_its_data_directory(up: UpProcess) -> None:
    client = SchemaRegistryClient({"url": f"{up.query_url}/registry"})
    try:
        schema_id = client.register_schema("logs.up", Schema(json.dumps(V1), "JSON"))
        assert json.loads(client.get_latest_version("logs.up").schema.schema_str) == V1
        assert client.get_schema(schema_id).schema_type == "JSON"
    finally:
        client.close()
    assert (up.data_dir / "registry.db").is_file()


def test_orasi_schema_commands(up: UpProcess, tmp_path: Path) -> None:
    v1, needs_peer = tmp_path / "v1.json", tmp_path / "peer.json"
    v1.write_text(json.dumps(V1))
    needs_peer.write_text(json.dumps(NEEDS_PEER))
    registered = schema_cli(up, "register", "spans.checkout", str(v1))
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.startswith("spans.checkout: version 1, id ")
    assert "spans.checkout" in schema_cli(up, "list").stdout.split()
    got = schema_cli(up, "get", "spans.checkout")
    assert got.stdout.startswith("# spans.checkout version 1 (id ")
    assert json.loads(got.stdout.split("\n", 1)[1]) == V1
    refused = schema_cli(up, "check", "spans.checkout", str(needs_peer))
    assert refused.returncode == 1
    assert "incompatible" in refused.stderr and "'peer' is required" in refused.stderr
    assert schema_cli(up, "check", "spans.checkout", str(v1)).stdout.strip() == "spans.checkout: compatible"
    assert schema_cli(up, "config").stdout.strip() == "BACKWARD"
    assert schema_cli(up, "config", "spans.checkout", "--set", "none").stdout.strip() == "NONE"
    assert schema_cli(up, "config", "spans.checkout").stdout.strip() == "NONE"
    assert schema_cli(up, "register", "spans.checkout", str(needs_peer)).returncode == 0
    bad = schema_cli(up, "register", "checkout-value", str(v1))
    assert bad.returncode == 1 and "error 42201" in bad.stderr and "spans, logs or metrics" in bad.stderr
