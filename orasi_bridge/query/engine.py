"""Running a tenant's SQL over the lake: Iceberg scan planning → Arrow → DuckDB.

For each lake table the SQL names, the engine takes the writer's consistent view (committed
snapshot + hot rows), plans the Iceberg scan of the tenant's partitions (cached per snapshot),
keeps the files whose ``time`` bounds meet the range, and registers under the table's name
Arrow datasets over those Parquet files and the hot rows. Only files that may hold rows of
another tenant or outside the range, and the hot rows, are filtered; the others are read as they
are, so only the columns the SQL uses are read. When the SQL admits only some trace ids
(``pushdown``), spans files are cut to the row groups their trace index names. DuckDB pushes
projections and further filters into the datasets (a UNION ALL view when there are several).

The time window of each table (``windows``): ``start``/``end`` when the caller gives them,
narrowed by the SQL's own predicates on ``time`` (``pushdown.time_bounds``, evaluated in the
query's transaction, so ``now()`` there is the query's ``now()``); without ``start``/``end``, the
SQL's predicates alone (a side they leave open is open); a reference with neither reads the
default window, the last hour. A table named several times is read over the union of its
references' windows, window by window (``ranges``: the files that meet one of them, not every file
between the first and the last; each reference's own predicates then keep its rows): the
rollup's RED query (``spanmetrics.source``) reads the minutes of its two edges only.

Every entry point (REST, Jaeger, Flight SQL, a federated query's regional part) runs a tenant's
query through ``execute``, which holds one of the tenant's query slots of the `ratelimit`
extension meanwhile, when the query API names one (Throttled / 429 when they are all taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pydantic import Field
from pyiceberg.expressions import EqualTo
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform

from orasi_bridge.lake import traceindex
from orasi_bridge.lake.audit import AuditRows
from orasi_bridge.lake.catalog import filesystem
from orasi_bridge.lake.localcache import LocalCache
from orasi_bridge.lake.schema import TABLES
from orasi_bridge.lake.spanmetrics import MACROS
from orasi_bridge.lake.writer import LakeWriter, TableView
from orasi_bridge.query import pushdown, sandbox
from orasi_bridge.query.files import DataFiles, Lru
from orasi_bridge.query.sandbox import QueryRefused
from orasi_bridge.query.timerange import resolve_range
from orasi_common.config.model import ComponentConfig
from orasi_common.extensions.ratelimit import RateLimiter
from orasi_common.telemetry.audit import sql_fields

T = TypeVar("T")


class QueryLimits(ComponentConfig):
    timeout: float = Field(default=30.0, gt=0, description="Seconds a query may run.")
    max_rows: int = Field(default=100_000, ge=1, description="Rows a result may have.")
    max_concurrent: int = Field(default=4, ge=1, description="Queries running at once; more wait.")
    threads: int = Field(default=2, ge=1, description="DuckDB threads per query.")
    memory_limit: str = Field(default="2GB", description="DuckDB memory limit per query.")


@dataclass
class QueryResult:
    columns: list[tuple[str, str]]
    rows: list[tuple[Any, ...]] | None = None  # for json / csv
    arrow: pa.Table | None = None  # for arrow
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return self.arrow.num_rows if self.arrow is not None else len(self.rows or ())


class QueryEngine:
    def __init__(self, writer: LakeWriter, limits: QueryLimits, limiter: RateLimiter | None = None) -> None:
        self._writer = writer
        self._limits = limits
        self._limiter = limiter
        self._slots = asyncio.Semaphore(limits.max_concurrent)
        self._files: tuple[DataFiles, str] | None = None
        self._plans: Lru[list[DataFile]] = Lru(64)
        # Idle sandboxed databases, one per query slot at most: opening one costs ~15 ms, a query's
        # own connection to it (``cursor()``: its own temporary views and transaction) ~0.3 ms.
        self._databases: list[duckdb.DuckDBPyConnection] = []

    @property
    def audit(self) -> AuditRows:
        """The bridge's audit trail (its lines, and rows of the lake's ``audit`` table)."""
        return self._writer.audit

    @property
    def region(self) -> str:
        """The region of the lake this engine reads (its rows' ``region``)."""
        return self._writer.config.region

    async def execute(
        self,
        sql: str,
        tenant: str,
        start: str | int | None = None,
        end: str | int | None = None,
        as_arrow: bool = False,
        audit_fields: Mapping[str, Any] | None = None,
        audited: bool = True,
    ) -> QueryResult:
        """Run one SELECT for ``tenant``; each table is read over its window (module docstring).
        Every query, answered or refused, is audited (``query``: its SQL, rows, duration, and
        ``audit_fields``), except a federated query's part that its coordinator runs here
        (``audited=False``: the coordinator audits the whole query once, ``federation``)."""
        if not audited:
            return await self._slot(sql, tenant, start, end, as_arrow)
        async with self.audited(sql, tenant, **(audit_fields or {})) as record:
            result = await self._slot(sql, tenant, start, end, as_arrow)
            record["row_count"] = result.row_count
            return result

    @contextlib.asynccontextmanager
    async def audited(self, sql: str, tenant: str, **fields: Any) -> AsyncIterator[dict[str, Any]]:
        """Audit the query run inside (``query``), answered or refused: its SQL, ``fields``, the
        ``row_count`` the caller sets in the yielded fields, the outcome, the duration."""
        started = time.perf_counter()
        record: dict[str, Any] = {**fields, "outcome": "ok", "row_count": None}
        try:
            yield record
        except Exception as error:
            record["outcome"] = type(error).__name__
            raise
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            self.audit.record("query", tenant, **sql_fields(sql), **record, duration_ms=duration_ms)

    async def _slot(
        self, sql: str, tenant: str, start: str | int | None, end: str | int | None, as_arrow: bool
    ) -> QueryResult:
        """``_execute`` within one of the tenant's query slots, when a limiter is named."""
        if self._limiter is None:
            return await self._execute(sql, tenant, start, end, as_arrow)
        async with self._limiter.query(tenant):
            return await self._execute(sql, tenant, start, end, as_arrow)

    async def _execute(
        self, sql: str, tenant: str, start: str | int | None, end: str | int | None, as_arrow: bool
    ) -> QueryResult:
        sandbox.check_statement(sql)
        explicit = resolve_range(start, end) if start is not None or end is not None else None
        default = resolve_range(None, None)
        tree = sandbox.parse(sql)
        names = sandbox.tables_in(tree) & TABLES.keys()
        trace_ids = pushdown.trace_ids(tree)
        bounds = {name: found for name, found in pushdown.time_bounds(tree).items() if name in names}
        views = {name: await self._writer.snapshot_view(name, tenant) for name in names}

        def work(connection: duckdb.DuckDBPyConnection) -> QueryResult:
            run = _Run(connection, sql)
            windows = run.windows(bounds, explicit, default)
            self._register(run, views, tenant, windows, trace_ids)
            return run.result(as_arrow, self._limits.max_rows)

        return await self._limited(work)

    async def windows(
        self, sql: str, start: str | int | None = None, end: str | int | None = None
    ) -> dict[str, tuple[int, int]]:
        """The [start, end] in ns each lake table ``sql`` names is read over by ``execute`` (an
        open side as the widest bound), for a federated query's coordinator."""
        sandbox.check_statement(sql)
        explicit = resolve_range(start, end) if start is not None or end is not None else None
        default = resolve_range(None, None)
        tree = sandbox.parse(sql)
        names = sandbox.tables_in(tree) & TABLES.keys()
        bounds = {name: found for name, found in pushdown.time_bounds(tree).items() if name in names}

        def work(connection: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
            run = _Run(connection, sql)
            run.windows(bounds, explicit, default)
            return {
                name: (_LOW if low is None else low, _HIGH if high is None else high)
                for name, (low, high) in run.stats["windows"].items()
            }

        return await self._limited(work)

    async def execute_over(
        self, sql: str, tables: dict[str, pa.Table], as_arrow: bool = False
    ) -> QueryResult:
        """Run one SELECT over ``tables`` (name → rows) with the engine's sandbox and limits: a
        federated query's last step, over what the regions sent."""
        sandbox.check_statement(sql)

        def work(connection: duckdb.DuckDBPyConnection) -> QueryResult:
            run = _Run(connection, sql)
            for name, table in tables.items():
                connection.register(name, table)
            run.stats["tables"] = sorted(tables)
            run.planned = time.perf_counter()
            return run.result(as_arrow, self._limits.max_rows)

        return await self._limited(work)

    async def _limited(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``work`` on a fresh connection to a sandboxed database of its own (one per query slot,
        with the per-query threads and memory limit) in a thread, within the concurrency and time
        limits."""
        async with self._slots:
            database = self._databases.pop() if self._databases else self._connect()
            connection = database.cursor()
            loop = asyncio.get_running_loop()
            task = loop.run_in_executor(None, work, connection)
            try:
                done, _ = await asyncio.wait({task}, timeout=self._limits.timeout)
                if not done:
                    connection.interrupt()
                    with contextlib.suppress(duckdb.Error, QueryRefused):
                        await task
                    raise QueryRefused(
                        f"the query ran longer than the limit of {self._limits.timeout:g} s; "
                        "narrow the time range or the query"
                    )
                return task.result()
            finally:
                connection.close()
                self._databases.append(database)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """A new sandboxed database with the lake's SQL macros (``spanmetrics.MACROS``)."""
        database = sandbox.connect(self._limits.threads, self._limits.memory_limit)
        for macro in MACROS:
            database.execute(macro)
        return database

    def _register(
        self,
        run: _Run,
        views: dict[str, TableView],
        tenant: str,
        windows: dict[str, list[tuple[int, int]]],
        trace_ids: frozenset[str] | None,
    ) -> None:
        connection = run.connection
        for name, view in views.items():
            parts = self._dataset(name, view, tenant, windows[name], run.stats, trace_ids)
            if len(parts) == 1:
                connection.register(name, parts[0])
                continue
            # Arrow cannot union a filtered dataset with others: DuckDB unions them in a view.
            sources = []
            for number, part in enumerate(parts):
                source = f"__orasi_{name}_{number}"
                connection.register(source, part)
                sources.append(f"SELECT * FROM {source}")
            connection.execute(f"CREATE TEMPORARY VIEW {name} AS {' UNION ALL '.join(sources)}")
        run.stats["tables"] = sorted(views)
        run.planned = time.perf_counter()

    def _dataset(
        self,
        name: str,
        view: TableView,
        tenant: str,
        ranges: list[tuple[int, int]],
        stats: dict[str, Any],
        trace_ids: frozenset[str] | None = None,
    ) -> list[ds.Dataset]:
        """Datasets whose union is the table for this query: tenant's rows in one of ``ranges``
        ([start, end] in ns, disjoint, in order).

        Committed files whose partition is the tenant's and whose ``time`` bounds (from the
        manifest) lie inside one range need no row filter, so only the columns the SQL uses are
        read; other files that meet a range, and the hot rows, are filtered. With ``trace_ids``
        (the SQL admits only spans of those traces), files are cut down to the row groups their
        trace index names.
        """
        table_schema = READ_SCHEMAS[name]
        micros = [(start_ns // 1000, end_ns // 1000) for start_ns, end_ns in ranges]
        in_time = None
        for start_us, end_us in micros:
            start_ts = pa.scalar(start_us, pa.timestamp("us", tz="UTC"))
            end_ts = pa.scalar(end_us, pa.timestamp("us", tz="UTC"))
            one = (pc.field("time") >= start_ts) & (pc.field("time") <= end_ts)
            in_time = one if in_time is None else in_time | one
        row_filter = (pc.field("tenant") == tenant) & (pc.scalar(False) if in_time is None else in_time)
        covered: list[tuple[ds.Fragment, pafs.FileSystem]] = []
        partial: list[tuple[ds.Fragment, pafs.FileSystem]] = []
        if view.snapshot_id is not None:
            bounds = _Bounds(view.table, tenant, micros)
            files = [file for file in self._plan(name, view, tenant) if bounds.overlaps(file)]
            stats["files"] += len(files)
            data, prefix = self._data_files()
            paths = [file.file_path.removeprefix(prefix) for file in files]
            fragments = data.fragments(
                READ_FORMAT,
                [(path, file.file_size_in_bytes) for path, file in zip(paths, files, strict=True)],
            )
            hits: dict[str, list[int] | None] = {}
            if trace_ids is not None and name == "spans":
                hits = data.trace_row_groups(paths, {traceindex.key_of(trace_id) for trace_id in trace_ids})
                stats["trace_index"] = {
                    "files_indexed": sum(1 for found in hits.values() if found is not None),
                    "row_groups": sum(len(found) for found in hits.values() if found is not None),
                }
            for path, file, (fragment, fs) in zip(paths, files, fragments, strict=True):
                groups = hits.get(path)
                if groups is not None:
                    if not groups:
                        continue
                    fragment = fragment.subset(row_group_ids=groups)
                (covered if bounds.covers(file) else partial).append((fragment, fs))
            stats["files_unfiltered"] = stats.get("files_unfiltered", 0) + len(covered)
            stats["files_local"] = stats.get("files_local", 0) + sum(
                1 for _, fs in covered + partial if fs is data.local
            )
        parts: list[ds.Dataset] = []
        if covered:
            parts.append(_union(covered, table_schema))
        if view.hot:
            hot = pa.Table.from_batches(view.hot, schema=TABLES[name]).cast(table_schema)
            stats["hot_rows"] += hot.num_rows
            parts.append(ds.dataset(hot.filter(row_filter)))
        if partial:
            parts.append(_union(partial, table_schema).filter(row_filter))
        if not parts:
            parts.append(ds.dataset(table_schema.empty_table()))
        return parts

    def _plan(self, name: str, view: TableView, tenant: str) -> list[DataFile]:
        """The tenant's files at the view's snapshot (Iceberg's partition pruning), cached per snapshot."""
        key = f"{name}/{view.snapshot_id}/{tenant}"
        files = self._plans.get(key)
        if files is None:
            scan = view.table.scan(
                row_filter=EqualTo("tenant", tenant),  # type: ignore[call-arg, arg-type]
                snapshot_id=view.snapshot_id,
            )
            files = [task.file for task in scan.plan_files()]
            self._plans.put(key, files)
        return files

    def close(self) -> None:
        """Stop the index lookups' threads and close the idle databases (queries still running
        finish theirs)."""
        if self._files is not None:
            self._files[0].close()
            self._files = None
        while self._databases:
            self._databases.pop().close()

    def _data_files(self) -> tuple[DataFiles, str]:
        if self._files is None:
            config = self._writer.config
            fs, prefix = filesystem(config)
            cache = LocalCache(config.local_cache) if config.local_cache else None
            self._files = (DataFiles(fs, cache), prefix)
        return self._files


_TEMPLATE = json.dumps(sandbox.parse("SELECT NULL"))  # a bound is put in its select list to print it
_LOW, _HIGH = -(2**62), 2**62  # an open side of a window, in ns (inside Arrow's µs timestamps)


class _Run:
    """One query on its own connection, inside one transaction (one ``now()`` for all of it)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, sql: str) -> None:
        self.connection = connection
        self.sql = sql
        self.started = time.perf_counter()
        self.planned = self.started
        self.stats: dict[str, Any] = {"files": 0, "hot_rows": 0}
        connection.execute("BEGIN TRANSACTION")

    def windows(
        self,
        bounds: dict[str, list[pushdown.TimeBounds]],
        explicit: tuple[int, int] | None,
        default: tuple[int, int],
    ) -> dict[str, list[tuple[int, int]]]:
        """Each table's windows in ns: its references' [start, end] (an open side as ``_LOW`` or
        ``_HIGH``), overlapping ones merged, in order. Recorded in the stats: ``ranges`` (None:
        open), and ``windows``, the span from the first start to the last end."""
        windows: dict[str, tuple[int | None, int | None]] = {}
        ranges: dict[str, list[tuple[int, int]]] = {}
        for name, references in bounds.items():
            found = [self._window(reference, explicit, default) for reference in references]
            starts, ends = [w[0] for w in found], [w[1] for w in found]
            windows[name] = (
                None if None in starts else min(s for s in starts if s is not None),
                None if None in ends else max(e for e in ends if e is not None),
            )
            ranges[name] = _merged(found)
        every = list(windows.values()) or [explicit or default]
        self.stats |= {
            "start_unix_nano": None
            if any(w[0] is None for w in every)
            else min(w[0] for w in every if w[0] is not None),
            "end_unix_nano": None
            if any(w[1] is None for w in every)
            else max(w[1] for w in every if w[1] is not None),
            "windows": {name: list(window) for name, window in sorted(windows.items())},
            "ranges": {
                name: [[_open(start), _open(end)] for start, end in found]
                for name, found in sorted(ranges.items())
            },
        }
        return ranges

    def _window(
        self, bounds: pushdown.TimeBounds, explicit: tuple[int, int] | None, default: tuple[int, int]
    ) -> tuple[int | None, int | None]:
        start: int | None = explicit[0] if explicit else None
        end: int | None = explicit[1] if explicit else None
        lowers = [v for v in map(self._nanos, bounds.lower) if v is not None]
        uppers = [v for v in map(self._nanos, bounds.upper) if v is not None]
        if not lowers and not uppers and explicit is None:
            return default
        if lowers:
            start = max(lowers) if start is None else max(start, *lowers)
        if uppers:
            end = min(uppers) if end is None else min(end, *uppers)
        return start, end

    def _nanos(self, expression: dict[str, Any]) -> int | None:
        """A bound's value in ns (a cast as DuckDB's comparison with `time` makes), None if it has none."""
        template = json.loads(_TEMPLATE)
        template["statements"][0]["node"]["select_list"] = [expression]
        try:
            text = self.connection.execute(
                "SELECT json_deserialize_sql(?)", [json.dumps(template)]
            ).fetchall()[0][0]
            row = self.connection.execute(f"SELECT epoch_us(CAST(({text}) AS TIMESTAMPTZ))").fetchall()
        except duckdb.Error:
            return None  # not a time: the query itself will say what is wrong
        value = row[0][0] if row else None
        return None if value is None else int(value) * 1000

    def result(self, as_arrow: bool, limit: int) -> QueryResult:
        connection, sql = self.connection, self.sql
        try:
            if as_arrow:
                relation = connection.sql(sql)
                columns = [(n, str(t)) for n, t in zip(relation.columns, relation.types, strict=True)]
                reader: pa.RecordBatchReader = relation.to_arrow_reader(8192)
                batches, count = [], 0
                for batch in reader:
                    batches.append(batch)
                    count += batch.num_rows
                    if count > limit:
                        break
                arrow = pa.Table.from_batches(batches, schema=reader.schema)
                rows, total = None, arrow.num_rows
            else:
                cursor = connection.execute(sql)
                columns = [(d[0], str(d[1])) for d in cursor.description or ()]
                rows = cursor.fetchmany(limit + 1)
                arrow, total = None, len(rows)
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:
            raise QueryRefused(str(exc)) from None
        if total > limit:
            raise _too_many(limit)
        self._finish(total)
        return QueryResult(columns, rows, arrow, self.stats)

    def _finish(self, total: int) -> None:
        self.stats |= {
            "rows": total,
            "plan_ms": round((self.planned - self.started) * 1000, 2),
            "elapsed_ms": round((time.perf_counter() - self.started) * 1000, 2),
        }


def _merged(windows: list[tuple[int | None, int | None]]) -> list[tuple[int, int]]:
    """``windows`` (None: open) as disjoint [start, end] in order, overlapping or touching ones merged."""
    ordered = sorted(
        (_LOW if start is None else start, _HIGH if end is None else end) for start, end in windows
    )
    merged: list[tuple[int, int]] = []
    for start, end in ordered:
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif start <= end:
            merged.append((start, end))
    return merged  # empty when every window is (start after end): nothing is read


def _open(bound: int) -> int | None:
    return None if bound in (_LOW, _HIGH) else bound


def _too_many(limit: int) -> QueryRefused:
    return QueryRefused(f"the result has more than {limit} rows (the row limit); add a LIMIT or aggregate")


# Low-cardinality text is read as Arrow dictionaries (no string per row; DuckDB still sees VARCHAR).
DICTIONARY_COLUMNS = frozenset(
    {
        "tenant",
        "region",
        "service_name",
        "name",
        "kind",
        "status_code",
        "status_message",
        "scope_name",
        "scope_version",
        "severity_text",
        "event_name",
        "body_type",
        "metric_name",
        "metric_type",
        "unit",
        "description",
        "aggregation_temporality",
    }
)
READ_FORMAT = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=DICTIONARY_COLUMNS))
READ_SCHEMAS = {
    name: pa.schema(
        [
            field.with_type(pa.dictionary(pa.int32(), field.type))
            if field.name in DICTIONARY_COLUMNS and field.type == pa.string()
            else field
            for field in schema
        ]
    )
    for name, schema in TABLES.items()
}


def _union(fragments: list[tuple[ds.Fragment, pafs.FileSystem]], schema: pa.Schema) -> ds.Dataset:
    """One dataset of fragments that may live on different filesystems (local copies, warehouse)."""
    by_filesystem: dict[int, tuple[pafs.FileSystem, list[ds.Fragment]]] = {}
    for fragment, fs in fragments:
        by_filesystem.setdefault(id(fs), (fs, []))[1].append(fragment)
    datasets = [ds.FileSystemDataset(group, schema, READ_FORMAT, fs) for fs, group in by_filesystem.values()]
    return datasets[0] if len(datasets) == 1 else ds.dataset(datasets)


class _Bounds:
    """Whether a committed file holds only rows of one tenant inside [start, end] (no filter needed)."""

    def __init__(self, table: Table, tenant: str, ranges: list[tuple[int, int]]) -> None:
        self._tenant = tenant
        self._ranges = ranges  # [start, end] in µs
        schema = table.schema()
        self._time_id = schema.find_field("time").field_id
        tenant_id = schema.find_field("tenant").field_id
        self._tenant_position = {
            spec_id: next(
                (
                    position
                    for position, spec_field in enumerate(spec.fields)
                    if spec_field.source_id == tenant_id
                    and isinstance(spec_field.transform, IdentityTransform)
                ),
                None,
            )
            for spec_id, spec in table.specs().items()
        }

    def overlaps(self, file: DataFile) -> bool:
        """The file may hold rows in a range (its ``time`` bounds, when known, say so)."""
        low = (file.lower_bounds or {}).get(self._time_id)
        high = (file.upper_bounds or {}).get(self._time_id)
        return any(
            (low is None or _micros(low) <= end_us) and (high is None or start_us <= _micros(high))
            for start_us, end_us in self._ranges
        )

    def covers(self, file: DataFile) -> bool:
        """Every row of the file is the tenant's and inside one range: no filter is needed."""
        position = self._tenant_position.get(file.spec_id)
        if position is None or file.partition[position] != self._tenant:
            return False
        if file.null_value_counts is None or file.null_value_counts.get(self._time_id, 1) != 0:
            return False  # rows with a null time must be filtered out
        low = (file.lower_bounds or {}).get(self._time_id)
        high = (file.upper_bounds or {}).get(self._time_id)
        if low is None or high is None:
            return False
        return any(start_us <= _micros(low) and _micros(high) <= end_us for start_us, end_us in self._ranges)


def _micros(bound: bytes) -> int:
    return int.from_bytes(bound, "little", signed=True)
