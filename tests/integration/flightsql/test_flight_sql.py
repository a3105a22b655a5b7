"""Arrow Flight SQL on the bridge (issue 18): driven by the ADBC Flight SQL driver (its DB-API, a
client no one here wrote) and by `pyarrow.flight` directly, over a real lake.

Rows are written at T0 (2024), outside the default window of the last hour: the SQL's own `time`
predicates bound the scan (or the `x-orasi-start`/`x-orasi-end` headers do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2

from integration.bridge import otlp_data as data
from integration.flightsql.conftest import StartApi
from orasi_bridge.api.extension import QueryApi
from orasi_bridge.flightsql.proto import FlightSql_pb2 as sql
from orasi_bridge.lake import LakeWriter
from orasi_bridge.lake.schema import TABLES
from orasi_common.pdata import Signal

T = TypeVar("T")
SINCE_2024 = "time >= TIMESTAMP '2024-01-01'"
HEADER = "adbc.flight.sql.rpc.call_header."
AUTHORIZATION = "adbc.flight.sql.authorization_header"


async def in_thread(function: Callable[[], T]) -> T:
    """Clients block and the server answers on this loop: run them beside it."""
    return await asyncio.to_thread(function)


def uri(api: QueryApi) -> str:
    return f"grpc://127.0.0.1:{api.flight_port}"


def connect(api: QueryApi, **options: str) -> Any:
    return flightsql.connect(uri(api), db_kwargs=options, autocommit=True)


def adbc_rows(api: QueryApi, query: str, **options: str) -> list[tuple[Any, ...]]:
    with connect(api, **options) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return list(cursor.fetchall())


def pack(message: Any) -> bytes:
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped.SerializeToString()


def unpack(body: bytes, message: Any) -> Any:
    wrapped = any_pb2.Any()
    wrapped.ParseFromString(body)
    assert wrapped.Unpack(message), wrapped.TypeName()
    return message


def options(tenant: str | None = None, key: str | None = None) -> flight.FlightCallOptions:
    headers = []
    if tenant is not None:
        headers.append((b"x-orasi-tenant", tenant.encode()))
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    return flight.FlightCallOptions(headers=headers)


def flight_query(client: flight.FlightClient, command: Any, call: flight.FlightCallOptions) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(command)), call)
    assert len(info.endpoints) == 1
    return client.do_get(info.endpoints[0].ticket, call).read_all()


@pytest.fixture
async def spans(writer: LakeWriter) -> LakeWriter:
    for n, name in enumerate(["alpha", "beta", "gamma"]):
        await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0 + n * 10**9, name)))
    return writer


async def test_statement_query_through_adbc(spans: LakeWriter, start_api: StartApi) -> None:
    api = await start_api(spans)
    query = f"SELECT name, duration_ns > 0 AS positive FROM spans WHERE {SINCE_2024} ORDER BY name"
    expected = [("alpha", True), ("beta", True), ("gamma", True)]
    assert await in_thread(lambda: adbc_rows(api, query)) == expected
    await spans.flush()  # committed files answer the same
    assert await in_thread(lambda: adbc_rows(api, query)) == expected

    def arrow() -> pa.Table:
        with connect(api) as connection, connection.cursor() as cursor:
            cursor.execute(f"SELECT name, time FROM spans WHERE {SINCE_2024} ORDER BY name")
            return cursor.fetch_arrow_table()

    table = await in_thread(arrow)
    assert table.column_names == ["name", "time"]
    assert pa.types.is_timestamp(table.schema.field("time").type)
    assert table.column("name").to_pylist() == ["alpha", "beta", "gamma"]


async def test_without_a_time_predicate_the_window_is_the_last_hour(
    spans: LakeWriter, start_api: StartApi
) -> None:
    api = await start_api(spans)
    assert await in_thread(lambda: adbc_rows(api, "SELECT count(*) FROM spans")) == [(0,)]
    # ... or the REST API's start/end, as headers.
    window = {f"{HEADER}x-orasi-start": str(data.T0 - 10), f"{HEADER}x-orasi-end": str(data.T0 + 15 * 10**8)}
    assert await in_thread(lambda: adbc_rows(api, "SELECT count(*) FROM spans", **window)) == [(2,)]


async def test_prepared_statements(spans: LakeWriter, start_api: StartApi) -> None:
    api = await start_api(spans)
    query = f"SELECT count(*) AS n FROM spans WHERE {SINCE_2024}"

    def through_adbc() -> list[Any]:
        with connect(api) as connection, connection.cursor() as cursor:
            cursor.adbc_prepare(query)
            found = []
            for _ in range(2):  # one prepared statement, executed twice
                cursor.execute(query)
                found.append(cursor.fetchall())
            return found

    assert await in_thread(through_adbc) == [[(3,)], [(3,)]]

    def through_flight() -> tuple[pa.Schema, pa.Table, pa.Table, Exception]:
        client = flight.connect(uri(api))
        call = options()
        created = list(
            client.do_action(
                flight.Action(
                    "CreatePreparedStatement", pack(sql.ActionCreatePreparedStatementRequest(query=query))
                ),
                call,
            )
        )
        result = unpack(created[0].body.to_pybytes(), sql.ActionCreatePreparedStatementResult())
        schema = pa.ipc.read_schema(pa.py_buffer(result.dataset_schema))
        handle = result.prepared_statement_handle
        command = sql.CommandPreparedStatementQuery(prepared_statement_handle=handle)
        first, second = flight_query(client, command, call), flight_query(client, command, call)
        closing = sql.ActionClosePreparedStatementRequest(prepared_statement_handle=handle)
        list(client.do_action(flight.Action("ClosePreparedStatement", pack(closing)), call))
        try:
            flight_query(client, command, call)
        except Exception as error:  # the handle is gone
            return schema, first, second, error
        raise AssertionError("a closed prepared statement still ran")

    schema, first, second, closed = await in_thread(through_flight)
    assert schema.names == ["n"]
    assert first.to_pylist() == second.to_pylist() == [{"n": 3}]
    assert isinstance(closed, KeyError | flight.FlightError), repr(closed)
    assert "no such handle" in str(closed)


async def test_metadata_calls(writer: LakeWriter, start_api: StartApi) -> None:
    api = await start_api(writer)
    # What the etcd registration record publishes as the bridge's gRPC query API.
    assert api.listening()["query_grpc"] == f"127.0.0.1:{api.flight_port}"

    def through_adbc() -> tuple[dict[str, Any], list[str], list[dict[str, Any]], pa.Schema]:
        with connect(api) as connection:
            info = connection.adbc_get_info()
            types = connection.adbc_get_table_types()
            objects = connection.adbc_get_objects().read_all().to_pylist()
            schema = connection.adbc_get_table_schema("spans")
        return info, types, objects, schema

    info, types, objects, schema = await in_thread(through_adbc)
    assert info["vendor_name"] == "Orasi bridge"
    assert info["vendor_arrow_version"] == pa.__version__
    assert types == ["TABLE"]
    [catalog] = objects
    [db_schema] = catalog["catalog_db_schemas"]
    assert db_schema["db_schema_name"] == "main"
    tables = {table["table_name"]: table for table in db_schema["db_schema_tables"]}
    assert sorted(tables) == sorted(TABLES)
    assert [c["column_name"] for c in tables["logs"]["table_columns"]] == TABLES["logs"].names
    assert schema.names == TABLES["spans"].names
    assert schema.field("time").type == pa.timestamp("us", tz="UTC")

    def through_flight() -> dict[str, pa.Table]:
        client = flight.connect(uri(api))
        call = options()
        commands = {
            "info": sql.CommandGetSqlInfo(info=[0, 3, 504]),
            "catalogs": sql.CommandGetCatalogs(),
            "schemas": sql.CommandGetDbSchemas(db_schema_filter_pattern="ma%"),
            "tables": sql.CommandGetTables(table_name_filter_pattern="sp_ns", include_schema=True),
            "no tables": sql.CommandGetTables(table_types=["VIEW"]),
            "types": sql.CommandGetTableTypes(),
        }
        return {name: flight_query(client, command, call) for name, command in commands.items()}

    answers = await in_thread(through_flight)
    assert answers["info"].column("info_name").to_pylist() == [0, 3, 504]
    assert answers["info"].column("value").to_pylist() == ["Orasi bridge", True, '"']
    assert answers["catalogs"].num_rows == 0
    assert answers["schemas"].to_pylist() == [{"catalog_name": None, "db_schema_name": "main"}]
    [spans_row] = answers["tables"].to_pylist()
    assert (spans_row["db_schema_name"], spans_row["table_name"], spans_row["table_type"]) == (
        "main",
        "spans",
        "TABLE",
    )
    assert pa.ipc.read_schema(pa.py_buffer(spans_row["table_schema"])) == TABLES["spans"]
    assert answers["no tables"].num_rows == 0
    assert answers["types"].to_pylist() == [{"table_type": "TABLE"}]


REFUSED = [
    ("COPY (SELECT 1) TO '/tmp/orasi-flight.csv'", "only SELECT queries are allowed"),
    ("INSTALL httpfs", "only SELECT queries are allowed"),
    ("ATTACH '/tmp/orasi-flight.db' AS other", "only SELECT queries are allowed"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
]


async def test_sandbox_refusals_are_invalid_argument(writer: LakeWriter, start_api: StartApi) -> None:
    api = await start_api(writer)
    for query, reason in REFUSED:

        def through_adbc(query: str = query) -> adbc_driver_manager.Error:
            with pytest.raises(adbc_driver_manager.Error) as raised:
                adbc_rows(api, query)
            return raised.value

        error = await in_thread(through_adbc)
        assert "INVALID_ARGUMENT" in str(error), (query, str(error))
        assert reason in str(error), (query, str(error))

        def through_flight(query: str = query) -> Exception:
            client = flight.connect(uri(api))
            with pytest.raises(pa.ArrowInvalid) as raised:
                flight_query(client, sql.CommandStatementQuery(query=query), options())
            return raised.value

        assert reason in str(await in_thread(through_flight)), query
    # Updates and parameters are refused too.

    def update() -> Exception:
        client = flight.connect(uri(api))
        descriptor = flight.FlightDescriptor.for_command(
            pack(sql.CommandStatementUpdate(query="DELETE FROM spans"))
        )
        with pytest.raises(pa.ArrowInvalid) as raised:
            client.get_flight_info(descriptor, options())
        return raised.value

    assert "read-only" in str(await in_thread(update))


async def test_tenants_are_isolated(writer: LakeWriter, start_api: StartApi) -> None:
    for tenant in ("tenant-a", "tenant-b"):
        for n in range(2):
            request = data.span_request(data.T0 + n, f"{tenant}-op-{n}", f"{tenant}-svc")
            await writer.consume(data.batch(Signal.TRACES, request, tenant=tenant))
    open_api = await start_api(writer)
    query = f"SELECT DISTINCT tenant, service_name FROM spans WHERE {SINCE_2024}"
    for tenant in ("tenant-a", "tenant-b"):
        rows = await in_thread(lambda t=tenant: adbc_rows(open_api, query, **{f"{HEADER}x-orasi-tenant": t}))
        assert rows == [(tenant, f"{tenant}-svc")]
    assert await in_thread(lambda: adbc_rows(open_api, query)) == []  # the default tenant has none

    # A result is handed only to the tenant that asked for it.
    def steal() -> Exception:
        client = flight.connect(uri(open_api))
        descriptor = flight.FlightDescriptor.for_command(pack(sql.CommandStatementQuery(query=query)))
        info = client.get_flight_info(descriptor, options("tenant-a"))
        with pytest.raises((KeyError, flight.FlightError)) as raised:
            client.do_get(info.endpoints[0].ticket, options("tenant-b")).read_all()
        return raised.value

    assert "no such handle" in str(await in_thread(steal))

    keyed = await start_api(writer, api_keys={"key-a": "tenant-a", "key-b": "tenant-b"})
    rows = await in_thread(lambda: adbc_rows(keyed, query, **{AUTHORIZATION: "Bearer key-b"}))
    assert rows == [("tenant-b", "tenant-b-svc")]

    def refused(headers: dict[str, str]) -> str:
        with pytest.raises(adbc_driver_manager.Error) as raised:
            adbc_rows(keyed, query, **headers)
        return str(raised.value)

    assert "UNAUTHENTICATED" in await in_thread(lambda: refused({}))
    assert "UNAUTHENTICATED" in await in_thread(lambda: refused({AUTHORIZATION: "Bearer nope"}))
    other = {AUTHORIZATION: "Bearer key-a", f"{HEADER}x-orasi-tenant": "tenant-b"}
    message = await in_thread(lambda: refused(other))
    assert "PermissionDenied" in message and "may not read tenant 'tenant-b'" in message


async def test_a_large_result_is_streamed_in_many_batches(spans: LakeWriter, start_api: StartApi) -> None:
    api = await start_api(spans, limits={"max_rows": 300_000})
    query = f"SELECT s.name, r.range AS n FROM spans s, range(100000) r WHERE s.{SINCE_2024}"

    def batches() -> list[pa.RecordBatch]:
        client = flight.connect(uri(api))
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(pack(sql.CommandStatementQuery(query=query))), options()
        )
        assert info.total_records == 300_000
        return [chunk.data for chunk in client.do_get(info.endpoints[0].ticket, options())]

    received = await in_thread(batches)
    assert len(received) >= 30
    assert sum(batch.num_rows for batch in received) == 300_000
    total = await in_thread(
        lambda: adbc_rows(api, f"SELECT count(*), sum(n) FROM ({query}) AS t")  # the same through ADBC
    )
    assert total == [(300_000, 3 * sum(range(100_000)))]

    def through_adbc() -> int:
        with connect(api) as connection, connection.cursor() as cursor:
            cursor.execute(query)
            return int(cursor.fetch_arrow_table().num_rows)

    assert await in_thread(through_adbc) == 300_000
    # Over the row limit: refused, as REST does.
    small = await start_api(spans, limits={"max_rows": 1000})
    with pytest.raises(adbc_driver_manager.Error, match="row limit"):
        await in_thread(lambda: adbc_rows(small, query))
