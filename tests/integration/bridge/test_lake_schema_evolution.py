"""A lake made by a bridge before the ``schema_violations`` column keeps working: the column is
appended at start (``catalog.ensure_table``), the files written before read it as null, and new
rows are written and queried with it. Real SeaweedFS and PostgreSQL."""

from __future__ import annotations

import uuid

import pyarrow as pa

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.servers import LakeSpace
from orasi_bridge.lake.catalog import open_catalog
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.rows import otlp_rows
from orasi_bridge.lake.schema import NAMESPACE, TABLES, VIOLATIONS
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Signal

WINDOW = {"start": data.T0 - data.HOUR, "end": data.T0 + 2 * data.HOUR}


async def test_a_lake_made_before_the_violations_column_gets_it(
    make_writer: MakeWriter, lake_space: LakeSpace
) -> None:
    before = pa.schema([field for field in TABLES["spans"] if field.name != VIOLATIONS])
    catalog = open_catalog(Config.model_validate(lake_space.lake_config()))
    rows = otlp_rows([data.batch(Signal.TRACES, data.traces_request())], "r")
    try:
        catalog.create_namespace_if_not_exists(NAMESPACE)
        old = catalog.create_table(f"{NAMESPACE}.spans", schema=before)
        old.append(pa.Table.from_batches([rows]).drop_columns([VIOLATIONS]).cast(before))
    finally:
        catalog.close()

    writer = await make_writer()
    spans = writer.tables["spans"]
    assert spans.schema().find_field(VIOLATIONS).optional
    assert [field.name for field in spans.schema().fields][-1] == VIOLATIONS
    await writer.consume(
        data.batch(Signal.TRACES, data.traces_request(data.T0 + data.HOUR), batch_id=uuid.uuid4().hex)
    )
    await writer.flush()

    engine = QueryEngine(writer, QueryLimits())
    result = await engine.execute(f"SELECT count(*), count({VIOLATIONS}) FROM spans", "default", **WINDOW)
    assert result.rows == [(2 * rows.num_rows, 0)]
    stored = spans.scan().to_arrow()
    assert stored.num_rows == 2 * rows.num_rows and stored.column(VIOLATIONS).null_count == stored.num_rows
