"""The `etcd` extension with the in-process registry: the record it writes, and its removal."""

from __future__ import annotations

import pytest

from orasi_common.control.registration import Endpoints, decode, key_of
from orasi_common.control.registry import LOCAL
from orasi_common.extensions.etcd import FACTORY, Config
from orasi_common.pipeline.component import Kind
from orasi_common.version import __version__

from ...doubles import make_settings


class _Host:
    def exporter(self, exporter_id: str) -> None:
        raise LookupError(exporter_id)

    def listening(self) -> dict[str, str]:
        return {
            "otlp_grpc": "0.0.0.0:4317",
            "otap": "127.0.0.1:4417",
            "admin": "[::]:13133",
            "otlp_arrow_v9": "127.0.0.1:1",  # a protocol the record does not know: not registered
        }


async def test_registers_the_advertised_endpoints_and_removes_them_on_shutdown() -> None:
    config = Config.model_validate(
        {
            "endpoints": [],
            "region": "eu-west-1",
            "zone": "eu-west-1b",
            "instance": "gw-1",
            "advertise_host": "10.1.2.3",
        }
    )
    extension = FACTORY.create(make_settings("etcd", Kind.EXTENSION), config, _Host())
    key = key_of("eu-west-1", "agent", "gw-1")
    await extension.start()
    record = decode((await LOCAL.snapshot(key))[key])
    assert record.endpoints == Endpoints(
        otlp_grpc="10.1.2.3:4317", otap="127.0.0.1:4417", admin="10.1.2.3:13133"
    )
    assert record.protocols == ("otap", "otlp_grpc")
    assert (record.region, record.zone, record.version) == ("eu-west-1", "eu-west-1b", __version__)
    await extension.shutdown()
    await extension.shutdown()
    assert await LOCAL.snapshot(key) == {}


def test_config_defaults_and_refusals() -> None:
    config = Config()
    assert (config.endpoints, config.region, config.zone, config.lease_ttl) == (
        ["http://127.0.0.1:2379"],
        "us-east-1",
        "",
        10,
    )
    with pytest.raises(ValueError, match="lease_ttl"):
        Config.model_validate({"lease_ttl": 1})
    with pytest.raises(ValueError, match="region"):
        Config.model_validate({"region": "a/b"})
    with pytest.raises(ValueError, match="TLS is not supported yet"):
        Config.model_validate({"endpoints": ["https://etcd:2379"]})
    with pytest.raises(ValueError, match="bad port"):
        Config.model_validate({"endpoints": ["http://etcd:99999"]})
