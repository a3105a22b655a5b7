"""A global query: the regions' bridges answer their parts, this bridge puts them together.

::

    POST /api/v1/query {"scope": "global"}  (or Flight SQL with x-orasi-scope: global)
      → plan (``plan``: partial aggregates, top rows, or raw rows)
      → the regions (``regions``: static peers, or the bridges registered in the control plane),
        all at once, each over HTTP with ``format: arrow``, as the caller's tenant with the
        caller's API key, within ``timeout`` seconds (a region with several bridges: the next
        one when one does not answer); this bridge's own region, when it is one of them, through
        its own engine in-process (the region's bridges read the region's one lake), started
        once the other regions' requests are sent (its parse and planning run on this event
        loop, and would otherwise hold them back)
      → an aggregate without GROUP BY (``Plan.scalar``: ``SELECT count(*) FROM spans``): the
        regions' one-row answers added up (min, max, …) here in Python (``_merge_scalar``);
        otherwise the union of what the regions sent, per table, as Arrow, and
        ``QueryEngine.execute_over``: the coordinator's SQL over that union, in the sandbox

``stats.regions`` says for each region how many rows it sent, how long it took and, when it did
not answer in time or failed, its error; ``stats.plan_ms`` (plan and regions looked up),
``merge_ms`` (after the last region answered), ``merge`` (``python`` or ``duckdb``) and
``elapsed_ms`` (the whole global query) time the coordinator's own steps. The regions that
answered make the result. A query refused by the SQL itself is refused before any region is
asked; when no region answers, the query fails (503) naming every region's error.

Audit: the coordinating bridge writes one ``query`` event per global query, answered or refused:
the caller's SQL, ``scope: global``, a ``federation_id``, the regions asked and what each sent
(``regions``: rows, or its error), the rows of the result, the duration. Its own region's part
runs unaudited (inside that event). Every other region's bridge audits the part it ran as a
``query`` event of its own (its lake was read, and a bridge audits every request it serves),
carrying the same ``federation_id`` (sent as ``x-orasi-federation-id``), so the legs of one
global query join on it.

A plan and the check of its SQL over empty tables (``_checked``: three small DuckDB queries) are
kept per (SQL, tenant) in a bounded LRU, so a repeated query (a dashboard's) goes straight to the
regions (its text is not checked again: it is the text checked when its plan was cached).
"""

from __future__ import annotations

import asyncio
import decimal
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
SEND_WAIT = 0.05
"""Seconds this bridge's own region's part waits for the other regions' requests to be sent."""
INLINE_DECODE = 64 * 1024
"""An Arrow answer up to this size is read on the event loop (tens of µs); a larger one in a thread."""


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
        started = time.perf_counter()
        key = f"{tenant}\n{sql}"
        checked = self._plans.get(key)
        if checked is None:  # a cached plan's SQL is the same text, checked when it was cached
            sandbox.check_statement(sql)
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
        planned = time.perf_counter()
        headers = {"x-orasi-tenant": tenant, FEDERATION_ID: federation_id}
        headers |= {name: value for name, value in (credentials or {}).items() if name in FORWARDED}
        # The other regions' requests go out first: this region's part then runs (its parse and
        # planning on this event loop) while they are being answered.
        sent = {region: asyncio.Event() for region in regions if region != self._engine.region}
        legs = {
            region: (
                self._region(self._here(parts, tenant, list(sent.values())), [], parts, headers, None)
                if region == self._engine.region
                else self._region(None, endpoints, parts, headers, sent[region])
            )
            for region, endpoints in regions.items()
        }
        answers = await asyncio.gather(*legs.values())
        answered = time.perf_counter()
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
        merged = _merge_scalar(found, columns, tables.get(PARTIALS, []), as_arrow)
        if merged is None:
            union = {name: _union(pieces) for name, pieces in tables.items()}
            merged = _conform(
                await self._engine.execute_over(found.coordinator_sql, union, as_arrow), columns
            )
            merged.stats["merge"] = "duckdb"
        done = time.perf_counter()
        merged.stats |= {
            "scope": "global",
            "plan": found.kind,
            "regions": stats,
            "plan_ms": round((planned - started) * 1000, 2),
            "merge_ms": round((done - answered) * 1000, 2),
            "elapsed_ms": round((done - started) * 1000, 2),
        }
        return merged

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
        sent: asyncio.Event | None,
    ) -> tuple[dict[str, pa.Table] | str, float]:
        """What one region sent (table → rows), or its error; and the time it took. ``here``:
        this bridge's own region, answered in-process instead of asking ``endpoints``. ``sent``
        is set once the region's requests are on their way (or failed)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._config.timeout):
                answer: dict[str, pa.Table] | str = await (here or self._ask(endpoints, parts, headers, sent))
        except OrasiError as error:  # in-process: the message the region's REST API would send
            answer = f"{self._engine.region} (this bridge): {error.message}"
        except TimeoutError:
            answer = f"no answer within {self._config.timeout:g} s"
        except RegionFailed as error:
            answer = str(error)
        finally:
            if sent is not None:
                sent.set()
        return answer, time.perf_counter() - started

    async def _ask(
        self,
        endpoints: list[str],
        parts: dict[str, tuple[str, str | int | None, str | int | None]],
        headers: dict[str, str],
        sent: asyncio.Event | None = None,
    ) -> dict[str, pa.Table]:
        problems = []
        for endpoint in endpoints:  # the next bridge of the region when one cannot be reached
            try:
                pieces = await asyncio.gather(
                    *(
                        self._part(endpoint, sql, start, end, headers, sent)
                        for sql, start, end in parts.values()
                    )
                )
                return dict(zip(parts, pieces, strict=True))
            except httpx.TransportError as error:
                problems.append(f"{endpoint}: {type(error).__name__}: {error}".rstrip(": "))
        raise RegionFailed("; ".join(problems))

    async def _here(
        self,
        parts: dict[str, tuple[str, str | int | None, str | int | None]],
        tenant: str,
        sent: list[asyncio.Event],
    ) -> dict[str, pa.Table]:
        """This bridge's own region's parts, through its engine (as its REST API would answer),
        once the other regions' requests are sent (``sent``), or ``SEND_WAIT`` seconds at most
        (a region whose connection hangs does not hold this one up)."""
        waits = [asyncio.ensure_future(event.wait()) for event in sent]
        try:
            if waits:
                await asyncio.wait(waits, timeout=SEND_WAIT)
        finally:
            for wait in waits:
                wait.cancel()
        results = await asyncio.gather(
            *(
                self._engine.execute(sql, tenant, start, end, as_arrow=True, audited=False)
                for sql, start, end in parts.values()
            )
        )
        return {name: cast(pa.Table, result.arrow) for name, result in zip(parts, results, strict=True)}

    async def _part(
        self,
        endpoint: str,
        sql: str,
        start: str | int | None,
        end: str | int | None,
        headers: dict[str, str],
        sent: asyncio.Event | None = None,
    ) -> pa.Table:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._config.timeout)

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            if sent is not None and event.endswith(("send_request_body.complete", ".failed")):
                sent.set()

        response = await self._client.post(
            f"http://{endpoint}/api/v1/query",
            json={"sql": sql, "start": start, "end": end, "format": "arrow"},
            headers=headers,
            extensions={"trace": trace},
        )
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise RegionFailed(f"{endpoint}: HTTP {response.status_code}: {message}")
        if len(response.content) <= INLINE_DECODE:
            return _read_stream(response.content)
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


_ARROW_TYPES: dict[str, pa.DataType] = {
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "HUGEINT": pa.decimal128(38, 0),  # as DuckDB sends it
    "UTINYINT": pa.uint8(),
    "USMALLINT": pa.uint16(),
    "UINTEGER": pa.uint32(),
    "UBIGINT": pa.uint64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
}
"""The result types a merge in Python writes (integers and floating point), as DuckDB's Arrow."""


def _merge_scalar(
    found: Plan, columns: list[tuple[str, str]], pieces: list[pa.Table], as_arrow: bool
) -> QueryResult | None:
    """The result of a ``Plan.scalar`` query merged here from the regions' one-row answers,
    without a DuckDB run: what the coordinator's SQL (``plan._merged``) computes over them —
    counts and sums added (a sum of NULLs is NULL), min and max of the non-NULL values, ``avg``
    the sum of sums over the sum of counts (NULL when there is none). None when the plan is not
    scalar, or a partial or the result is not an integer or floating-point number (DuckDB
    merges those)."""
    if not found.scalar or len(columns) != len(found.scalar) or any(p.num_rows != 1 for p in pieces):
        return None
    partials: dict[str, list[Any]] = {}
    for piece in pieces:
        for name, column in zip(piece.column_names, piece.columns, strict=True):
            kind = column.type
            if not (
                pa.types.is_integer(kind)
                or pa.types.is_floating(kind)
                or (pa.types.is_decimal(kind) and kind.scale == 0)
            ):
                return None
            item = column[0].as_py()
            partials.setdefault(name, []).append(int(item) if isinstance(item, decimal.Decimal) else item)
    values: list[Any] = []
    for (function, first), (_, wanted) in zip(found.scalar, columns, strict=True):
        if wanted not in _ARROW_TYPES:
            return None
        seen = [v for v in partials.get(f"__a{first}", []) if v is not None]
        if function == "count":
            value: Any = sum(seen)
        elif function == "sum":
            value = sum(seen) if seen else None
        elif function in ("min", "max"):  # NaN is the largest value, as DuckDB orders it
            value = (min if function == "min" else max)(seen, key=_nan_last) if seen else None
        else:  # avg: sum(__a<first>) / sum(__a<first + 1>)
            counts = sum(v for v in partials.get(f"__a{first + 1}", []) if v is not None)
            value = float(sum(seen)) / float(counts) if seen and counts else None
        if value is not None:
            value = float(value) if wanted in ("DOUBLE", "FLOAT") else int(value)
        values.append(value)
    result = QueryResult(list(columns), stats={"rows": 1, "merge": "python"})
    if as_arrow:
        result.arrow = pa.table(
            [
                pa.array([value], _ARROW_TYPES[wanted])
                for value, (_, wanted) in zip(values, columns, strict=True)
            ],
            names=[name for name, _ in columns],
        )
    else:
        result.rows = [tuple(values)]
    return result


def _nan_last(value: float) -> tuple[bool, float]:
    return value != value, value


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
