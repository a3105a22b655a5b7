"""Arrow Flight SQL on the bridge's gRPC query port: the same engine, sandbox and limits as REST.

Calls and what answers them::

    GetFlightInfo(CommandStatementQuery | CommandPreparedStatementQuery)
        → the engine runs the SQL (QueryEngine.execute, Arrow) for the caller's tenant; the result
          waits under a random handle; FlightInfo(schema, one endpoint, ticket = the handle)
    DoGet(TicketStatementQuery)     → that result, one record batch per message (8,192 rows each)
    GetFlightInfo(CommandGetSqlInfo | GetCatalogs | GetDbSchemas | GetTables | GetTableTypes)
        → the metadata table (``metadata``), handed over the same way
    GetSchema(CommandStatementQuery)  → the result's schema (the SQL run with LIMIT 0)
    DoAction CreatePreparedStatement  → a handle for the SQL (checked and described now);
             ClosePreparedStatement   → forgets it
    DoPut                             → refused: the query API is read-only, without parameters

Tenant and API key come from each call's headers (``x-orasi-tenant``, ``authorization: Bearer
KEY`` or ``x-api-key``) exactly as for REST; a result or a prepared statement is only handed to
the tenant that made it. ``x-orasi-start`` / ``x-orasi-end`` are the REST API's ``start`` /
``end``; without them the SQL's own ``time`` predicates, else the last hour, bound the scan.
``x-orasi-scope: global`` runs the query over every region's bridge (``orasi_bridge.federation``).

Results wait at most ``RESULT_TTL`` seconds for their DoGet and at most ``MAX_RESULTS`` are kept
(the oldest goes first); prepared statements at most ``MAX_PREPARED`` (the oldest goes first).
Errors: a refused or failing query is INVALID_ARGUMENT with DuckDB's message (REST's 400), a
missing or unknown key UNAUTHENTICATED, a key of another tenant PERMISSION_DENIED, an unknown
handle NOT_FOUND, an unsupported command UNIMPLEMENTED.

pyarrow runs these handlers on gRPC's threads; the engine is asyncio, so each call hands its
query to the bridge's event loop and waits for it there (never blocking the loop).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from orasi_bridge.federation import Federation
from orasi_bridge.flightsql import metadata
from orasi_bridge.flightsql.proto import FlightSql_pb2 as sql
from orasi_bridge.query import sandbox
from orasi_bridge.query.engine import QueryEngine
from orasi_common.errors import OrasiError, PermanentError
from orasi_common.transport.tls import TlsServerConfig

RESULT_TTL = 300.0
MAX_RESULTS = 64
MAX_PREPARED = 1024
CREATE_PREPARED = "CreatePreparedStatement"
CLOSE_PREPARED = "ClosePreparedStatement"

TenantOf = Callable[[Mapping[str, str]], str]
"""Headers (lower-case names, first value of each) → tenant; raises flight errors when refused."""

T = TypeVar("T")


class _Headers(flight.ServerMiddleware):  # type: ignore[misc]
    def __init__(self, headers: dict[str, list[str | bytes]]) -> None:
        self.headers = {
            name.lower(): value.decode() if isinstance(value, bytes) else value
            for name, values in headers.items()
            for value in values[:1]
        }


class _HeadersFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str | bytes]]) -> _Headers:
        return _Headers(headers)


class _Store:
    """Handles → (tenant, value), bounded, oldest out first, each kept at most ``ttl`` seconds."""

    def __init__(self, capacity: int, ttl: float | None) -> None:
        self._items: OrderedDict[bytes, tuple[str, Any, float]] = OrderedDict()
        self._capacity, self._ttl = capacity, ttl
        self._lock = threading.Lock()

    def put(self, tenant: str, value: Any) -> bytes:
        handle = secrets.token_bytes(16)
        now = time.monotonic()
        with self._lock:
            while self._items and (
                len(self._items) >= self._capacity
                or (self._ttl is not None and now - next(iter(self._items.values()))[2] > self._ttl)
            ):
                self._items.popitem(last=False)
            self._items[handle] = (tenant, value, now)
        return handle

    def get(self, handle: bytes, tenant: str, *, remove: bool = False) -> Any:
        with self._lock:
            item = self._items.get(handle)
            if item is None or item[0] != tenant:
                raise pa.ArrowKeyError(
                    "no such handle (it was used, closed or expired, or is another tenant's)"
                )
            if remove:
                del self._items[handle]
            return item[1]

    def discard(self, handle: bytes, tenant: str) -> None:
        with self._lock:
            item = self._items.get(handle)
            if item is not None and item[0] == tenant:
                del self._items[handle]


def _tls_options(tls: TlsServerConfig | None) -> dict[str, Any]:
    """FlightServerBase's TLS arguments for ``tls`` (the location's scheme is then grpc+tls)."""
    if tls is None:
        return {}
    options: dict[str, Any] = {
        "tls_certificates": [
            flight.CertKeyPair(Path(tls.cert_file).read_bytes(), Path(tls.key_file).read_bytes())
        ]
    }
    if tls.client_ca_file is not None:
        options.update(verify_client=True, root_certificates=Path(tls.client_ca_file).read_bytes())
    return options


class FlightSqlServer(flight.FlightServerBase):  # type: ignore[misc]
    """The Flight SQL service over ``engine``; serving from construction until ``shutdown``."""

    def __init__(
        self,
        location: str,
        engine: QueryEngine,
        tenant_of: TenantOf,
        loop: asyncio.AbstractEventLoop,
        federation: Federation | None = None,
        tls: TlsServerConfig | None = None,
    ) -> None:
        super().__init__(location, middleware={"headers": _HeadersFactory()}, **_tls_options(tls))
        self._engine = engine
        self._tenant_of = tenant_of
        self._loop = loop
        self._federation = federation
        self._results = _Store(MAX_RESULTS, RESULT_TTL)
        self._prepared = _Store(MAX_PREPARED, None)

    # -- the calls -------------------------------------------------------------------------

    def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        headers = self._headers(context)
        tenant = self._tenant_of(headers)
        command = _command(descriptor)
        table = self._answer(command, tenant, headers)
        ticket = _pack(sql.TicketStatementQuery(statement_handle=self._results.put(tenant, table)))
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, table.nbytes)

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        tenant = self._tenant_of(self._headers(context))
        message = _unpack(ticket.ticket, sql.TicketStatementQuery)
        table = self._results.get(message.statement_handle, tenant, remove=True)
        return flight.RecordBatchStream(table)

    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        headers = self._headers(context)
        tenant = self._tenant_of(headers)
        command = _command(descriptor)
        if isinstance(command, sql.CommandStatementQuery | sql.CommandPreparedStatementQuery):
            query = self._query_of(command, tenant)
            return flight.SchemaResult(self._describe(query, tenant, headers))
        return flight.SchemaResult(self._answer(command, tenant, headers).schema)

    def do_action(self, context: Any, action: flight.Action) -> Iterator[flight.Result]:
        headers = self._headers(context)
        tenant = self._tenant_of(headers)
        body = action.body.to_pybytes() if action.body is not None else b""
        if action.type == CREATE_PREPARED:
            request = _unpack(body, sql.ActionCreatePreparedStatementRequest)
            schema = self._describe(request.query, tenant, headers)
            handle = self._prepared.put(tenant, request.query)
            result = sql.ActionCreatePreparedStatementResult(
                prepared_statement_handle=handle, dataset_schema=schema.serialize().to_pybytes()
            )
            return iter([flight.Result(_pack(result))])
        if action.type == CLOSE_PREPARED:
            close = _unpack(body, sql.ActionClosePreparedStatementRequest)
            self._prepared.discard(close.prepared_statement_handle, tenant)
            return iter([])
        raise NotImplementedError(f"the action {action.type!r} is not supported")

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [
            (CREATE_PREPARED, "Prepare one SELECT (no parameters)."),
            (CLOSE_PREPARED, "Forget a prepared statement."),
        ]

    def do_put(self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any) -> None:
        raise pa.ArrowInvalid(
            "the query API is read-only and takes no parameters: send a SELECT with its values written in"
        )

    # -- helpers ---------------------------------------------------------------------------

    def _answer(self, command: Message, tenant: str, headers: Mapping[str, str]) -> pa.Table:
        if isinstance(command, sql.CommandStatementQuery | sql.CommandPreparedStatementQuery):
            return self._run(self._query_of(command, tenant), tenant, headers)
        if isinstance(command, sql.CommandGetSqlInfo):
            return metadata.sql_info(list(command.info))
        if isinstance(command, sql.CommandGetCatalogs):
            return metadata.catalogs()
        if isinstance(command, sql.CommandGetDbSchemas):
            return metadata.db_schemas(
                _optional(command, "catalog"), _optional(command, "db_schema_filter_pattern")
            )
        if isinstance(command, sql.CommandGetTables):
            return metadata.tables(
                _optional(command, "catalog"),
                _optional(command, "db_schema_filter_pattern"),
                _optional(command, "table_name_filter_pattern"),
                command.table_types,
                command.include_schema,
            )
        if isinstance(command, sql.CommandGetTableTypes):
            return metadata.table_types()
        raise pa.ArrowInvalid(
            "updates are not accepted: the query API is read-only"
            if isinstance(command, sql.CommandStatementUpdate | sql.CommandPreparedStatementUpdate)
            else f"the command {type(command).__name__} is not supported"
        )

    def _query_of(self, command: Message, tenant: str) -> str:
        if isinstance(command, sql.CommandStatementQuery):
            return str(command.query)
        assert isinstance(command, sql.CommandPreparedStatementQuery)
        query: str = self._prepared.get(command.prepared_statement_handle, tenant)
        return query

    def _run(self, query: str, tenant: str, headers: Mapping[str, str]) -> pa.Table:
        start, end = headers.get("x-orasi-start"), headers.get("x-orasi-end")
        if headers.get("x-orasi-scope") == "global" and self._federation is not None:
            result = self._call(self._federation.execute(query, tenant, start, end, True, headers))
        else:
            result = self._call(self._engine.execute(query, tenant, start, end, as_arrow=True))
        assert result.arrow is not None
        return result.arrow

    def _describe(self, query: str, tenant: str, headers: Mapping[str, str]) -> pa.Schema:
        """The schema of ``query``'s result (checked as a query, run with no rows)."""
        body = query.strip().rstrip(";")
        try:
            sandbox.check_statement(body)  # before the wrapper, which would hide the reason
        except PermanentError as error:
            raise pa.ArrowInvalid(error.message) from None
        return self._run(f"SELECT * FROM ({body}) LIMIT 0", tenant, headers).schema

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
        except PermanentError as error:
            raise pa.ArrowInvalid(error.message) from None
        except OrasiError as error:
            raise flight.FlightUnavailableError(error.message) from None

    @staticmethod
    def _headers(context: Any) -> Mapping[str, str]:
        middleware = context.get_middleware("headers")
        return middleware.headers if middleware is not None else {}


_COMMANDS: dict[str, type[Message]] = {
    message.DESCRIPTOR.full_name: message
    for message in (
        sql.CommandStatementQuery,
        sql.CommandPreparedStatementQuery,
        sql.CommandGetSqlInfo,
        sql.CommandGetCatalogs,
        sql.CommandGetDbSchemas,
        sql.CommandGetTables,
        sql.CommandGetTableTypes,
        sql.CommandStatementUpdate,
        sql.CommandPreparedStatementUpdate,
    )
}


def _command(descriptor: flight.FlightDescriptor) -> Message:
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise pa.ArrowInvalid("send a Flight SQL command (a CMD descriptor), not a path")
    wrapped = any_pb2.Any()
    try:
        wrapped.ParseFromString(descriptor.command)
    except DecodeError:
        raise pa.ArrowInvalid("the command is not a Flight SQL message (google.protobuf.Any)") from None
    kind = _COMMANDS.get(wrapped.TypeName())
    if kind is None:
        raise NotImplementedError(f"the command {wrapped.TypeName() or '(none)'} is not supported")
    command = kind()
    wrapped.Unpack(command)
    return command


def _unpack(body: bytes, kind: type[Message]) -> Any:
    wrapped = any_pb2.Any()
    message = kind()
    try:
        wrapped.ParseFromString(body)
        if not wrapped.Unpack(message):
            raise DecodeError(wrapped.TypeName())
    except DecodeError:
        raise pa.ArrowInvalid(f"expected a {kind.DESCRIPTOR.full_name} message") from None
    return message


def _pack(message: Message) -> bytes:
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped.SerializeToString()


def _optional(message: Message, name: str) -> str | None:
    return str(getattr(message, name)) if message.HasField(name) else None
