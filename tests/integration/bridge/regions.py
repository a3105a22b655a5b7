"""Regional lakes written as the lake writer writes them, and the global lake's rows and files: for
the replication tests (``test_lake_replicate``) and the global lake's maintenance tests
(``test_global_lake_maintenance``).

A regional lake is one of `orasi up --regions` (SQLite catalog, file warehouse); its rows are
made by ``rows`` (a unique ``service_name`` per row, so that a test can tell every row apart) and
committed by ``append`` as one flush (``files``, one fast append with a batch id).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from orasi_bridge.lake import replicate as replication
from orasi_bridge.lake.catalog import ensure_table, filesystem, open_catalog
from orasi_bridge.lake.commits import BATCH_IDS_PROPERTY
from orasi_bridge.lake.config import Config, ReplicateConfig
from orasi_bridge.lake.files import sort_rows, write_data_files
from orasi_bridge.lake.schema import MONTHLY, TABLES

DAY_US = 86_400_000_000
START_US = 1_780_000_000_000_000
_serial = itertools.count()


def regional_lake(root: Path, region: str) -> Config:
    return Config(
        region=region,
        catalog_uri=f"sqlite:///{root / region / 'catalog.db'}",
        warehouse=f"file://{root / region / 'warehouse'}",
    )


def rows(
    name: str, regions: dict[str, int], days: int = 2, tenant: str = "acme", start_us: int = START_US
) -> pa.Table:
    """``regions[r]`` rows with region ``r`` (spread over ``days`` days from ``start_us``), unique
    ``service_name``s by row; every other column null."""
    count = sum(regions.values())
    serial = [next(_serial) for _ in range(count)]
    values: dict[str, Any] = {
        "tenant": [tenant] * count,
        "region": [region for region, n in regions.items() for _ in range(n)],
        "service_name": [f"svc-{i}" for i in serial],
        "time": pa.array([start_us + (i % days) * DAY_US + i for i in range(count)], pa.int64()).cast(
            TABLES[name].field("time").type
        ),
    }
    schema = TABLES[name]
    columns = [
        pa.array(values[f.name], f.type) if f.name in values else pa.nulls(count, f.type) for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def append(lake: Config, name: str, table_rows: pa.Table) -> int:
    """Commit ``table_rows`` to the lake's table as one flush of the writer does; the snapshot id."""
    catalog = open_catalog(lake)
    try:
        table = ensure_table(catalog, name)
        fs, prefix = filesystem(lake)
        ordered, partitions = sort_rows(table_rows.to_batches(), TABLES[name], name in MONTHLY)
        data_files = write_data_files(table, name, ordered, partitions, fs, prefix)
        properties = {BATCH_IDS_PROPERTY: f"batch-{next(_serial)}"}
        with (
            table.transaction() as transaction,
            transaction.update_snapshot(snapshot_properties=properties).fast_append() as fast,
        ):
            for data_file in data_files:
                fast.append_data_file(data_file)
        snapshot = table.current_snapshot()
        assert snapshot is not None
        return snapshot.snapshot_id
    finally:
        catalog.close()


def global_counts(target: ReplicateConfig, name: str, source: Config) -> dict[str, int]:
    """Rows per region of the global table, counted by DuckDB over pyiceberg's scan."""
    catalog = open_catalog(replication.global_config(source, target))
    try:
        scanned = catalog.load_table(f"orasi.{name}").scan().to_arrow()
    finally:
        catalog.close()
    with duckdb.connect() as database:
        database.register("scanned", scanned)
        result = database.sql("SELECT region, count(*) FROM scanned GROUP BY region")
        assert result is not None
        return {region: count for region, count in result.fetchall()}


def global_files(target: ReplicateConfig, name: str, source: Config) -> list[Any]:
    catalog = open_catalog(replication.global_config(source, target))
    try:
        return [task.file for task in catalog.load_table(f"orasi.{name}").scan().plan_files()]
    finally:
        catalog.close()
