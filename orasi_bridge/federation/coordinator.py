"""A global query: the regions' bridges answer their parts, this bridge puts them together.

::

    POST /api/v1/query {"scope": "global"}  (or Flight SQL with x-orasi-scope: global)
      → plan (``plan``: partial aggregates, top rows, or raw rows)
      → the regions (``regions``: static peers, or the bridges registered in the control plane),
        all at once, each over HTTP with ``format: arrow``, as the caller's tenant with the
        caller's API key, within ``timeout`` seconds (a region with several bridges: the next
        one when one does not answer); this bridge's own region, when it is one of them, through
        its own engine in-process (the region's bridges read the region's one lake)
      → the union of what the regions sent, per table, as Arrow
      → ``QueryEngine.execute_over``: the coordinator's SQL over that union, in the sandbox

``stats.regions`` says for each region how many rows it sent, how long it took and, when it did
not answer in time or failed, its error; the regions that answered make the result. A query
refused by the SQL itself is refused before any region is asked; when no region answers, the
query fails (503) naming every region's error.

Audit: the coordinating bridge writes one ``query`` event per global query, answered or refused:
the caller's SQL, ``scope: global``, a ``federation_id``, the regions asked and what each sent
(``regions``: rows, or its error), the rows of the result, the duration. Its own region's part
runs unaudited (inside that event). Every other region's bridge audits the part it ran as a
``query`` event of its own (its lake was read, and a bridge audits every request it serves),
carrying the same ``federation_id`` (sent as ``x-orasi-federation-id``), so the legs of one
global query join on it.

A plan and the check of its SQL over empty tables (``_checked``: three small DuckDB queries) are
kept per (SQL, tenant) in a bounded LRU, so a repeated query (a dashboard's) goes straight to the
regions.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, cast

import httpx
import pyarrow as pa

from orasi_bridge.federation.config import FederationConfig
from orasi_bridge.federation.plan import PARTIALS, Plan, plan, raw
from orasi_bridge.lake.schema import TABLES
from orasi_bridge.query import sandbox
from orasi_bridge.query.engine import QueryEngine, QueryResult
from orasi_bridge.query.files import Lru
from orasi_common.control import registration
from orasi_common.errors import OrasiError, PermanentError, Unavailable
from orasi_common.pipeline.component import Host

CHECKED_PLANS = 256
"""Checked plans kept, least recently used first out."""
FORWARDED = ("authorization", "x-api-key")
"""The caller's headers sent on to the regions (the API key); the tenant goes as x-orasi-tenant."""
FEDERATION_ID = "x-orasi-federation-id"
"""The header naming the global query a regional part belongs to (audited with the part)."""
_FEDERATION_ID = re.compile(r"[0-9a-f]{32}")


def federation_id_of(value: str | None) -> str | None:
    """A well-formed ``x-orasi-federation-id`` (32 lowercase hex digits), else None."""
    return value if value is not None and _FEDERATION_ID.fullmatch(value) else None


class Snapshot(Protocol):
    async def snapshot(self, prefix: str) -> dict[str, bytes]: ...


class RegionFailed(Exception):
    """A region did not answer its part (the message says why)."""


class Federation:
    def __init__(
        self, config: FederationConfig, engine: QueryEngine, registry: Callable[[], Snapshot | None]
    ) -> None:
        self._config = config
        self._engine = engine
        self._registry = registry
        self._client: httpx.AsyncClient | None = None
        self._plans: Lru[tuple[Plan, list[tuple[str, str]]]] = Lru(CHECKED_PLANS)

    async def execute(
        self,
        sql: str,
        tenant: str,
        start: str | int | None = None,
        end: str | int | None = None,
        as_arrow: bool = False,
        credentials: Mapping[str, str] | None = None,
    ) -> QueryResult:
        """``sql`` over the union of every region's tables, audited once (module docstring)."""
        federation_id = uuid.uuid4().hex
        asked: dict[str, dict[str, Any]] = {}  # region → its stats entry, once the regions answered
        async with self._engine.audited(sql, tenant, scope="global", federation_id=federation_id) as record:
            try:
                result = await self._execute(
                    sql, tenant, start, end, as_arrow, credentials, federation_id, asked
                )
            finally:
                record["regions"] = {
                    region: entry["error"] if entry["error"] else {"rows": entry["rows"]}
                    for region, entry in asked.items()
                }
            record["row_count"] = result.row_count
            return result

    async def _execute(
        self,
        sql: str,
        tenant: str,
        start: str | int | None,
        end: str | int | None,
        as_arrow: bool,
        credentials: Mapping[str, str] | None,
        federation_id: str,
        stats: dict[str, dict[str, Any]],
    ) -> QueryResult:
        """The global query; ``stats`` is filled with each region's entry once they answered."""
        sandbox.check_statement(sql)
        key = f"{tenant}\n{sql}"
        checked = self._plans.get(key)
        if checked is None:
            checked = await self._checked(await asyncio.to_thread(plan, sql))
            self._plans.put(key, checked)
        found, columns = checked
        parts: dict[str, tuple[str, str | int | None, str | int | None]] = {}
        if found.kind == "raw":
            windows = await self._engine.windows(sql, start, end)
            parts = {name: (text, *windows[name]) for name, text in found.region_sql.items()}
        else:
            parts = {name: (text, start, end) for name, text in found.region_sql.items()}
        regions = await self.regions()
        headers = {"x-orasi-tenant": tenant, FEDERATION_ID: federation_id}
        headers |= {name: value for name, value in (credentials or {}).items() if name in FORWARDED}
        answers = await asyncio.gather(
            *(
                self._region(
                    self._here(parts, tenant) if region == self._engine.region else None,
                    endpoints,
                    parts,
                    headers,
                )
                for region, endpoints in regions.items()
            )
        )
        tables: dict[str, list[pa.Table]] = {name: [] for name in parts}
        for region, (answer, elapsed) in zip(regions, answers, strict=True):
            entry: dict[str, Any] = {"rows": None, "ms": round(elapsed * 1000, 2), "error": None}
            if isinstance(answer, str):
                entry["error"] = answer
            else:
                entry["rows"] = sum(table.num_rows for table in answer.values())
                for name, table in answer.items():
                    tables[name].append(table)
            stats[region] = entry
        if not regions or all(entry["error"] for entry in stats.values()):
            problems = "; ".join(f"{region}: {entry['error']}" for region, entry in stats.items())
            raise Unavailable(
                f"no region answered the global query ({problems or 'no bridge is registered'})"
            )
        union = {name: _union(pieces) for name, pieces in tables.items()}
        result = await self._engine.execute_over(found.coordinator_sql, union, as_arrow)
        result.stats |= {"scope": "global", "plan": found.kind, "regions": stats}
        return _conform(result, columns)

    async def _checked(self, found: Plan) -> tuple[Plan, list[tuple[str, str]]]:
        """``found`` and the columns of its result, once its SQL ran over empty tables here (a
        refused query is refused before any region is asked); the raw plan when a partial plan's
        SQL does not bind."""
        empty = {name: TABLES[name].empty_table() for name in found.tables}
        columns = (await self._engine.execute_over(found.sql, empty)).columns
        if found.kind == "partial":
            try:
                regional = await self._engine.execute_over(found.region_sql[PARTIALS], empty, True)
                assert regional.arrow is not None
                await self._engine.execute_over(found.coordinator_sql, {PARTIALS: regional.arrow})
            except PermanentError:
                found = await asyncio.to_thread(raw, found.sql)
        return found, columns

    async def regions(self) -> dict[str, list[str]]:
        """Region → the endpoints (host:port) of its bridges' REST query APIs, sorted by region."""
        found: dict[str, list[str]] = {}
        if self._config.peers:
            for peer in self._config.peers:
                found.setdefault(peer.region, []).append(peer.endpoint)
            return dict(sorted(found.items()))
        registry = self._registry()
        if registry is None:
            raise PermanentError(
                "a global query needs the bridges of every region: configure query_api.federation.peers, "
                f"or the {self._config.registry!r} extension with etcd"
            )
        try:
            async with asyncio.timeout(self._config.timeout):
                keys = await registry.snapshot(registration.ROOT + "/")
        except Exception as error:  # etcd down or slow: say so, as a retryable failure
            raise Unavailable(f"the control plane does not answer ({error!r})") from None
        for key, value in sorted(keys.items()):
            try:
                where = registration.parse_key(key)
                if where.kind != "bridge":
                    continue
                endpoint = registration.decode(value).endpoints.query_http
            except registration.MalformedRecord:
                continue
            if endpoint is not None:
                found.setdefault(where.region, []).append(endpoint)
        return dict(sorted(found.items()))

    async def _region(
        self,
        here: Coroutine[Any, Any, dict[str, pa.Table]] | None,
        endpoints: list[str],
        parts: dict[str, tuple[str, str | int | None, str | int | None]],
        headers: dict[str, str],
    ) -> tuple[dict[str, pa.Table] | str, float]:
        """What one region sent (table → rows), or its error; and the time it took. ``here``:
        this bridge's own region, answered in-process instead of asking ``endpoints``."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._config.timeout):
                answer: dict[str, pa.Table] | str = await (here or self._ask(endpoints, parts, headers))
        except OrasiError as error:  # in-process: the message the region's REST API would send
            answer = f"{self._engine.region} (this bridge): {error.message}"
        except TimeoutError:
            answer = f"no answer within {self._config.timeout:g} s"
        except RegionFailed as error:
            answer = str(error)
        return answer, time.perf_counter() - started

    async def _ask(
        self,
        endpoints: list[str],
        parts: dict[str, tuple[str, str | int | None, str | int | None]],
        headers: dict[str, str],
    ) -> dict[str, pa.Table]:
        problems = []
        for endpoint in endpoints:  # the next bridge of the region when one cannot be reached
            try:
                pieces = await asyncio.gather(
                    *(self._part(endpoint, sql, start, end, headers) for sql, start, end in parts.values())
                )
                return dict(zip(parts, pieces, strict=True))
            except httpx.TransportError as error:
                problems.append(f"{endpoint}: {type(error).__name__}: {error}".rstrip(": "))
        raise RegionFailed("; ".join(problems))

    async def _here(
        self, parts: dict[str, tuple[str, str | int | None, str | int | None]], tenant: str
    ) -> dict[str, pa.Table]:
        """This bridge's own region's parts, through its engine (as its REST API would answer)."""
        results = await asyncio.gather(
            *(
                self._engine.execute(sql, tenant, start, end, as_arrow=True, audited=False)
                for sql, start, end in parts.values()
            )
        )
        return {name: cast(pa.Table, result.arrow) for name, result in zip(parts, results, strict=True)}

    async def _part(
        self, endpoint: str, sql: str, start: str | int | None, end: str | int | None, headers: dict[str, str]
    ) -> pa.Table:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._config.timeout)
        response = await self._client.post(
            f"http://{endpoint}/api/v1/query",
            json={"sql": sql, "start": start, "end": end, "format": "arrow"},
            headers=headers,
        )
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise RegionFailed(f"{endpoint}: HTTP {response.status_code}: {message}")
        return await asyncio.to_thread(_read_stream, response.content)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def registry_of(host: Host, extension_id: str) -> Callable[[], Snapshot | None]:
    """The registry of the service's extension ``extension_id`` (the `etcd` extension), looked up
    when a query asks (it starts after the query API)."""

    def lookup() -> Snapshot | None:
        for component in host.components(extension_id):
            registry = getattr(component, "registry", None)
            if registry is not None:
                return cast(Snapshot, registry)
        return None

    return lookup


def _read_stream(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(data) as reader:
        return reader.read_all()


_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER"}
_INTEGERS |= {"UBIGINT", "UHUGEINT"}


def _conform(result: QueryResult, columns: list[tuple[str, str]]) -> QueryResult:
    """The result with the column types of the query run over one lake: a merged partial
    aggregate comes back through Arrow (an integer sum as DECIMAL(38,0)); its values are made
    what the single-lake query gives (Python ints for JSON and CSV)."""
    if [name for name, _ in columns] != [name for name, _ in result.columns]:
        return result
    for index, ((_, wanted), (_, kind)) in enumerate(zip(columns, result.columns, strict=True)):
        if wanted == kind or result.rows is None:
            continue
        convert: Callable[[Any], Any] | None = (
            int if wanted in _INTEGERS else float if wanted in ("DOUBLE", "FLOAT") else None
        )
        if convert is None:
            continue
        result.rows = [
            (*row[:index], None if row[index] is None else convert(row[index]), *row[index + 1 :])
            for row in result.rows
        ]
        result.columns[index] = (result.columns[index][0], wanted)
    return result


def _union(pieces: list[pa.Table]) -> pa.Table:
    """One table of the regions' pieces (the first piece's types win where they differ)."""
    if len(pieces) == 1:
        return pieces[0]
    try:
        return pa.concat_tables(pieces, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        schema = pieces[0].schema
        return pa.concat_tables([piece.select(schema.names).cast(schema) for piece in pieces])


__all__ = ["FEDERATION_ID", "PARTIALS", "Federation", "RegionFailed", "federation_id_of", "registry_of"]
