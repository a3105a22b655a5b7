"""Two regions' lakes sharing the batch-id claims (lake/global_dedup.py): a batch both hold is
committed in the lake whose flush claimed it first, and left out of the other.

Real SeaweedFS and PostgreSQL: two lakes (two catalog schemas, two warehouse prefixes) whose
claims live in the first lake's schema, as the regions' catalogs' PostgreSQL would hold them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from integration.bridge import otlp_data as data
from integration.bridge.conftest import build_writer, close_writer
from integration.bridge.servers import LakeSpace
from orasi_bridge.lake.global_dedup import GlobalDedup, GlobalDedupConfig
from orasi_common.pdata import Signal


@pytest.fixture
def second_space(lake_servers: None) -> Iterator[LakeSpace]:
    with LakeSpace.made() as space:
        yield space


def test_a_batch_id_belongs_to_the_lake_that_claimed_it_first(lake_space: LakeSpace) -> None:
    config = GlobalDedupConfig(store=lake_space.catalog_uri)
    east, west = GlobalDedup(config, "east"), GlobalDedup(config, "west")
    x, y, z = (uuid.uuid4().hex for _ in range(3))
    try:
        assert east.claimed_elsewhere([x, y]) == set()
        assert west.claimed_elsewhere([y, z, y]) == {y}
        assert east.claimed_elsewhere([x, y, z]) == {z}  # its own claims again: still its own
        assert west.claimed_elsewhere([]) == set()
    finally:
        east.close()
        west.close()


async def test_two_lakes_holding_one_batch_commit_it_once(
    lake_space: LakeSpace, second_space: LakeSpace
) -> None:
    claims = {"store": lake_space.catalog_uri}
    east = build_writer(lake_space.lake_config(flush_interval=300, global_dedup=claims))
    west = build_writer(second_space.lake_config(flush_interval=300, global_dedup=claims))
    shared, only_west = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        await east.start()
        await west.start()
        await east.consume(data.batch(Signal.TRACES, data.traces_request(data.T0), batch_id=shared))
        await west.consume(data.batch(Signal.TRACES, data.traces_request(data.T0), batch_id=shared))
        await west.consume(
            data.batch(Signal.TRACES, data.traces_request(data.T0 + 10**9), batch_id=only_west)
        )
        await west.flush()  # claims both first
        await east.flush()
        rows = {}
        for name, writer in (("east", east), ("west", west)):
            writer.tables["spans"].refresh()
            rows[name] = writer.tables["spans"].scan().to_arrow().num_rows
    finally:
        await close_writer(east)
        await close_writer(west)
    request = data.traces_request(data.T0)
    spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
    assert rows == {"east": 0, "west": 2 * spans}
