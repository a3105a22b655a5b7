"""What the Flight SQL metadata calls answer: server info, catalogs, schemas, tables, table types.

The lake tables live in DuckDB's default schema ``main`` of the query's connection, with no
catalog (``SELECT * FROM spans`` and ``SELECT * FROM main.spans`` both work), so ``GetCatalogs``
has no rows, ``GetDbSchemas`` one (catalog null, ``main``) and ``GetTables`` the lake tables
(type ``TABLE``, with their Arrow schemas on request). Result schemas and ``GetSqlInfo``'s dense
union are the ones the Flight SQL specification defines for each command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pyarrow as pa

from orasi_bridge.lake.schema import TABLES
from orasi_common.version import __version__

SCHEMA_NAME = "main"
TABLE_TYPE = "TABLE"

# SqlInfo codes (Flight SQL's SqlInfo enum) and the union member each value is sent in.
_STRING, _BOOL, _BIGINT, _INT32 = 0, 1, 2, 3
SQL_INFO: dict[int, tuple[int, object]] = {
    0: (_STRING, "Orasi bridge"),  # FLIGHT_SQL_SERVER_NAME
    1: (_STRING, __version__),  # FLIGHT_SQL_SERVER_VERSION
    2: (_STRING, pa.__version__),  # FLIGHT_SQL_SERVER_ARROW_VERSION
    3: (_BOOL, True),  # FLIGHT_SQL_SERVER_READ_ONLY
    4: (_BOOL, True),  # FLIGHT_SQL_SERVER_SQL
    5: (_BOOL, False),  # FLIGHT_SQL_SERVER_SUBSTRAIT
    8: (_INT32, 0),  # FLIGHT_SQL_SERVER_TRANSACTION: none
    9: (_BOOL, False),  # FLIGHT_SQL_SERVER_CANCEL
    500: (_BOOL, False),  # SQL_DDL_CATALOG
    501: (_BOOL, False),  # SQL_DDL_SCHEMA
    502: (_BOOL, False),  # SQL_DDL_TABLE
    503: (_INT32, 1),  # SQL_IDENTIFIER_CASE: case-insensitive
    504: (_STRING, '"'),  # SQL_IDENTIFIER_QUOTE_CHAR
    505: (_INT32, 1),  # SQL_QUOTED_IDENTIFIER_CASE: case-insensitive (DuckDB)
    506: (_BOOL, True),  # SQL_ALL_TABLES_ARE_SELECTABLE
    531: (_STRING, ""),  # SQL_CATALOG_TERM: no catalogs
}

SQL_INFO_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.string()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.field("item", pa.string()))),
        pa.field(
            "int32_to_int32_list_map",
            pa.map_(pa.int32(), pa.list_(pa.field("item", pa.int32()))),
        ),
    ]
)
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), False), pa.field("value", SQL_INFO_VALUE, False)]
)
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.string(), False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.string()), pa.field("db_schema_name", pa.string(), False)]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.string()),
        pa.field("db_schema_name", pa.string()),
        pa.field("table_name", pa.string(), False),
        pa.field("table_type", pa.string(), False),
    ]
)
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.string(), False)])


def sql_info(codes: Sequence[int]) -> pa.Table:
    """One row per info code asked for that the bridge knows (all of them when none is asked)."""
    wanted = [code for code in (codes or sorted(SQL_INFO)) if code in SQL_INFO]
    children: list[list[object]] = [[] for _ in range(6)]
    types, offsets = [], []
    for code in wanted:
        member, value = SQL_INFO[code]
        types.append(member)
        offsets.append(len(children[member]))
        children[member].append(value)
    value = pa.UnionArray.from_dense(
        pa.array(types, pa.int8()),
        pa.array(offsets, pa.int32()),
        [pa.array(values, field.type) for values, field in zip(children, SQL_INFO_VALUE, strict=True)],
        [field.name for field in SQL_INFO_VALUE],
    )
    return pa.Table.from_arrays([pa.array(wanted, pa.uint32()), value], schema=SQL_INFO_SCHEMA)


def catalogs() -> pa.Table:
    return CATALOGS_SCHEMA.empty_table()


def db_schemas(catalog: str | None, pattern: str | None) -> pa.Table:
    rows = [SCHEMA_NAME] if _no_catalog(catalog) and _matches(pattern, SCHEMA_NAME) else []
    return pa.Table.from_pydict(
        {"catalog_name": [None] * len(rows), "db_schema_name": rows}, DB_SCHEMAS_SCHEMA
    )


def tables(
    catalog: str | None,
    schema_pattern: str | None,
    table_pattern: str | None,
    table_types: Iterable[str],
    include_schema: bool,
) -> pa.Table:
    types = set(table_types)
    names = sorted(
        name
        for name in TABLES
        if _no_catalog(catalog)
        and _matches(schema_pattern, SCHEMA_NAME)
        and _matches(table_pattern, name)
        and (not types or TABLE_TYPE in types)
    )
    columns: dict[str, list[object]] = {
        "catalog_name": [None] * len(names),
        "db_schema_name": [SCHEMA_NAME] * len(names),
        "table_name": list(names),
        "table_type": [TABLE_TYPE] * len(names),
    }
    if not include_schema:
        return pa.Table.from_pydict(columns, TABLES_SCHEMA)
    columns["table_schema"] = [TABLES[name].serialize().to_pybytes() for name in names]
    return pa.Table.from_pydict(columns, TABLES_WITH_SCHEMA)


def table_types() -> pa.Table:
    return pa.Table.from_pydict({"table_type": [TABLE_TYPE]}, TABLE_TYPES_SCHEMA)


def _no_catalog(catalog: str | None) -> bool:
    """The catalog filter admits tables without a catalog (absent, or the empty string)."""
    return not catalog


def _matches(pattern: str | None, name: str) -> bool:
    """SQL LIKE (``%`` any run, ``_`` one character; case-sensitive, as the spec's examples)."""
    if pattern is None:
        return True
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None
