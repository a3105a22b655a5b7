"""host:port endpoints and the metadata that travels from hop to hop."""

from __future__ import annotations

import pytest

from orasi_common.pdata import Signal
from orasi_common.transport import headers
from orasi_common.transport.endpoint import split_endpoint, validate_endpoint

from ...builders import batch_with


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("0.0.0.0:4317", ("0.0.0.0", 4317)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:4318", ("::1", 4318)),
        (":4317", ("0.0.0.0", 4317)),
        ("gateway.orasi:4417", ("gateway.orasi", 4417)),
    ],
)
def test_split_endpoint(endpoint: str, expected: tuple[str, int]) -> None:
    assert split_endpoint(endpoint) == expected
    assert validate_endpoint(endpoint) == endpoint


@pytest.mark.parametrize("endpoint", ["localhost", "host:", "host:http", "host:65536", "host:-1"])
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        split_endpoint(endpoint)


def test_hop_headers_carry_tenant_and_batch_id() -> None:
    batch = batch_with(Signal.LOGS, 1, tenant="acme")
    assert headers.hop_headers(batch) == [("x-orasi-tenant", "acme"), ("x-orasi-batch-id", batch.batch_id)]


def test_incoming_batch_id_keeps_well_formed_ids_only() -> None:
    good = "0123456789abcdef" * 2
    assert headers.incoming_batch_id(good) == good
    for bad in (None, "", "short", "UPPERCASE0123456789", "x" * 20, "a" * 65):
        new = headers.incoming_batch_id(bad)
        assert new != bad
        assert len(new) == 32


def test_incoming_tenant_defaults() -> None:
    assert headers.incoming_tenant(None) == "default"
    assert headers.incoming_tenant("") == "default"
    assert headers.incoming_tenant("acme") == "acme"
