"""The Flight SQL metadata tables, as the specification lays them out."""

from __future__ import annotations

import pyarrow as pa

from orasi_bridge.flightsql import metadata
from orasi_bridge.lake.schema import TABLES


def test_sql_info_is_a_dense_union_per_code() -> None:
    table = metadata.sql_info([504, 0, 3, 8, 99999])  # 99999: unknown, left out
    assert table.schema == metadata.SQL_INFO_SCHEMA
    assert table.column("info_name").to_pylist() == [504, 0, 3, 8]
    assert table.column("value").to_pylist() == ['"', "Orasi bridge", True, 0]
    union = table.column("value").chunk(0)
    assert union.type.mode == "dense"
    assert union.type_codes.to_pylist() == [0, 0, 1, 3]  # string, string, bool, int32 bitmask
    assert metadata.sql_info([]).num_rows == len(metadata.SQL_INFO)


def test_tables_filters_and_schemas() -> None:
    every = metadata.tables(None, None, None, [], include_schema=False)
    assert every.column("table_name").to_pylist() == sorted(TABLES)
    assert every.schema == metadata.TABLES_SCHEMA
    assert metadata.tables(None, "m_in", "%s", ["TABLE"], include_schema=False).column(
        "table_name"
    ).to_pylist() == sorted(name for name in TABLES if name.endswith("s"))
    assert metadata.tables("orasi", None, None, [], include_schema=False).num_rows == 0  # no catalogs
    assert metadata.tables(None, "other", None, [], include_schema=False).num_rows == 0
    assert metadata.tables(None, None, None, ["VIEW"], include_schema=False).num_rows == 0
    with_schema = metadata.tables("", None, "logs", [], include_schema=True)
    [row] = with_schema.to_pylist()
    assert pa.ipc.read_schema(pa.py_buffer(row["table_schema"])) == TABLES["logs"]


def test_schemas_catalogs_and_types() -> None:
    assert metadata.catalogs().num_rows == 0
    assert metadata.db_schemas(None, None).to_pylist() == [{"catalog_name": None, "db_schema_name": "main"}]
    assert metadata.db_schemas(None, "x%").num_rows == 0
    assert metadata.table_types().to_pylist() == [{"table_type": "TABLE"}]
