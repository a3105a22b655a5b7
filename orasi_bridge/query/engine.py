"""Running a tenant's SQL over the lake: Iceberg scan planning → Arrow → DuckDB.

For each lake table the SQL names, the engine takes the writer's consistent view (committed
snapshot + hot rows), plans the Iceberg scan with the tenant and time predicates (partition and
file pruning), and registers a filtered Arrow dataset over those Parquet files and the hot rows
under the table's name. DuckDB pushes projections and further filters into that dataset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pydantic import Field
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThanOrEqual

from orasi_bridge.lake.catalog import filesystem
from orasi_bridge.lake.schema import TABLES
from orasi_bridge.lake.writer import LakeWriter, TableView
from orasi_bridge.query import sandbox
from orasi_bridge.query.sandbox import QueryRefused
from orasi_bridge.query.timerange import resolve_range
from orasi_common.config.model import ComponentConfig


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


class QueryEngine:
    def __init__(self, writer: LakeWriter, limits: QueryLimits) -> None:
        self._writer = writer
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.max_concurrent)
        self._filesystem: tuple[pafs.FileSystem, str] | None = None

    async def execute(
        self,
        sql: str,
        tenant: str,
        start: str | int | None = None,
        end: str | int | None = None,
        as_arrow: bool = False,
    ) -> QueryResult:
        """Run one SELECT for ``tenant`` over rows whose ``time`` is in [start, end]."""
        sandbox.check_statement(sql)
        start_ns, end_ns = resolve_range(start, end)
        names = sandbox.referenced_tables(sql) & TABLES.keys()
        views = {name: self._writer.snapshot_view(name, tenant) for name in names}
        async with self._slots:
            connection = sandbox.connect(self._limits.threads, self._limits.memory_limit)
            loop = asyncio.get_running_loop()
            run = loop.run_in_executor(
                None, self._run, connection, sql, views, tenant, start_ns, end_ns, as_arrow
            )
            try:
                done, _ = await asyncio.wait({run}, timeout=self._limits.timeout)
                if not done:
                    connection.interrupt()
                    with contextlib.suppress(duckdb.Error):
                        await run
                    raise QueryRefused(
                        f"the query ran longer than the limit of {self._limits.timeout:g} s; "
                        "narrow the time range or the query"
                    )
                return run.result()
            finally:
                connection.close()

    def _run(
        self,
        connection: duckdb.DuckDBPyConnection,
        sql: str,
        views: dict[str, TableView],
        tenant: str,
        start_ns: int,
        end_ns: int,
        as_arrow: bool,
    ) -> QueryResult:
        started = time.perf_counter()
        stats: dict[str, Any] = {"files": 0, "hot_rows": 0}
        for name, view in views.items():
            connection.register(name, self._dataset(name, view, tenant, start_ns, end_ns, stats))
        planned = time.perf_counter()
        limit = self._limits.max_rows
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
            raise QueryRefused(
                f"the result has more than {limit} rows (the row limit); add a LIMIT or aggregate"
            )
        stats |= {
            "rows": total,
            "tables": sorted(views),
            "start_unix_nano": start_ns,
            "end_unix_nano": end_ns,
            "plan_ms": round((planned - started) * 1000, 2),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        return QueryResult(columns, rows, arrow, stats)

    def _dataset(
        self, name: str, view: TableView, tenant: str, start_ns: int, end_ns: int, stats: dict[str, Any]
    ) -> ds.Dataset:
        table_schema = TABLES[name]
        start_us, end_us = start_ns // 1000, end_ns // 1000
        parts: list[ds.Dataset] = []
        if view.snapshot_id is not None:
            row_filter = And(
                EqualTo("tenant", tenant),  # type: ignore[call-arg, arg-type]
                GreaterThanOrEqual("time", start_us),  # type: ignore[call-arg, arg-type]
                LessThanOrEqual("time", end_us),  # type: ignore[call-arg, arg-type]
            )
            scan = view.table.scan(row_filter=row_filter, snapshot_id=view.snapshot_id)
            fs, prefix = self._fs()
            paths = [task.file.file_path.removeprefix(prefix) for task in scan.plan_files()]
            stats["files"] += len(paths)
            if paths:
                parts.append(ds.dataset(paths, schema=table_schema, format="parquet", filesystem=fs))
        if view.hot:
            hot = pa.Table.from_batches(view.hot, schema=table_schema)
            stats["hot_rows"] += hot.num_rows
            parts.append(ds.dataset(hot))
        if not parts:
            parts.append(ds.dataset(table_schema.empty_table()))
        time_field = pc.field("time")
        return ds.dataset(parts).filter(
            (pc.field("tenant") == tenant)
            & (time_field >= pa.scalar(start_us, pa.timestamp("us", tz="UTC")))
            & (time_field <= pa.scalar(end_us, pa.timestamp("us", tz="UTC")))
        )

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if self._filesystem is None:
            self._filesystem = filesystem(self._writer.config)
        return self._filesystem
