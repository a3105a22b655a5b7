"""Region roles in etcd (control/roles.py) against a real etcd of the test's own (the roles key is
global): `orasi dr promote` swaps primary and secondary in one transaction, and an `etcd`
resolver that names a role follows the region holding it, back to its `region` when the key goes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orasi_common import cli
from orasi_common.control.registration import key_of
from orasi_common.control.roles import ROLES_KEY, Roles, promote
from orasi_common.discovery.etcd import EtcdResolverConfig
from orasi_common.discovery.resolvers import Resolver, ResolverConfig
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.etcd import EtcdServer
from tests.integration.discovery.records import etcd_client, registration
from tests.integration.discovery.test_etcd_resolver import eventually

EAST, WEST = "us-east-1", "us-west-2"
BRIDGES = {EAST: "127.0.0.1:1001", WEST: "127.0.0.1:2001"}


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path).start() as etcd:
        yield etcd


def resolver(url: str, role: str, fallback: str, reported: list[list[str]]) -> Resolver:
    config = ResolverConfig(
        etcd=EtcdResolverConfig(service="bridge", region=fallback, role=role, endpoints=[url], timeout=2)
    )
    return Resolver(
        config, reported.append, name=f"lb/{role}", metrics=Metrics("gateway"), protocol="otlp_grpc"
    )


async def promote_command(region: str, url: str) -> int:
    """`orasi dr promote` (its own event loop: in a thread)."""
    return await asyncio.to_thread(cli.main, ["dr", "promote", "--region", region, "--etcd", url])


async def test_promote_moves_the_resolvers_and_the_key_falls_back(
    own_etcd: EtcdServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = own_etcd.url
    client = etcd_client(url)
    for region, endpoint in BRIDGES.items():
        await client.put(key_of(region, "bridge", "b1").encode(), registration(endpoint))
    primary: list[list[str]] = []
    secondary: list[list[str]] = []
    to_primary = resolver(url, "primary", EAST, primary)
    to_secondary = resolver(url, "secondary", WEST, secondary)
    await to_primary.start()
    await to_secondary.start()
    try:
        assert primary[-1] == [BRIDGES[EAST]] and secondary[-1] == [BRIDGES[WEST]]  # no key: fallbacks

        assert await promote([url], WEST, dry_run=True) == (None, Roles(WEST))
        assert await client.get(ROLES_KEY) is None
        assert await promote([url], EAST) == (None, Roles(EAST))  # no secondary yet
        assert await promote([url], WEST) == (Roles(EAST), Roles(WEST, EAST))
        await eventually(lambda: primary[-1] == [BRIDGES[WEST]], 5, "the primary's resolver on us-west-2")
        await eventually(lambda: secondary[-1] == [BRIDGES[EAST]], 5, "the secondary's on us-east-1")

        assert await promote_command(EAST, url) == 0
        out, err = capsys.readouterr()
        assert "from primary us-west-2, secondary us-east-1 to primary us-east-1, secondary us-west-2" in out
        [audited] = [json.loads(line) for line in err.splitlines() if '"logger": "orasi.audit"' in line]
        assert (audited["event"], audited["region"], audited["after"]) == (
            "dr.promote",
            EAST,
            "primary us-east-1, secondary us-west-2",
        )
        await eventually(lambda: primary[-1] == [BRIDGES[EAST]], 5, "failback of the primary's resolver")
        await eventually(lambda: secondary[-1] == [BRIDGES[WEST]], 5, "failback of the secondary's")
        assert await promote_command(EAST, url) == 0
        assert "us-east-1 is the primary already" in capsys.readouterr().out

        # A malformed value changes nothing; a deleted key sends each back to its region.
        await client.put(ROLES_KEY, b"[1, 2]")
        await client.put(key_of(EAST, "bridge", "b2").encode(), registration("127.0.0.1:1002"))
        await eventually(lambda: len(primary[-1]) == 2, 5, "the primary's resolver still on us-east-1")
        assert await promote_command(WEST, url) == 1
        assert "not a roles document" in capsys.readouterr().err
        await client.put(ROLES_KEY, Roles(WEST, EAST).encode())
        await eventually(lambda: primary[-1] == [BRIDGES[WEST]], 5, "the primary's resolver on us-west-2")
        await client.delete(ROLES_KEY)
        await eventually(lambda: primary[-1] == [BRIDGES[EAST], "127.0.0.1:1002"], 5, "back to us-east-1")
        await eventually(lambda: secondary[-1] == [BRIDGES[WEST]], 5, "the secondary's back to us-west-2")
    finally:
        await to_primary.stop()
        await to_secondary.stop()
        await client.close()
