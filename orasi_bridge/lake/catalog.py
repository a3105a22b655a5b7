"""The Iceberg catalog and tables (pyiceberg's SQL catalog), and Arrow filesystem access to files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import sqlalchemy.exc
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, TableAlreadyExistsError
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform

from orasi_bridge.lake.config import Config
from orasi_bridge.lake.schema import MONTHLY, NAMESPACE, TABLES

SETUP_ATTEMPTS = 10
"""Attempts at creating the catalog's tables or a lake table while other bridges race to."""


def open_catalog(config: Config) -> Catalog:
    """Connect to the SQL catalog (creating its tables on first use, safe when several bridges
    start at once), or to AWS Glue's for a ``glue://`` URI (``_glue``). Blocking."""
    properties: dict[str, str] = {"uri": config.catalog_uri, "warehouse": config.warehouse}
    if config.warehouse.startswith("file://"):
        Path(urlparse(config.warehouse).path).mkdir(parents=True, exist_ok=True)
    if config.s3.endpoint:
        properties["s3.endpoint"] = config.s3.endpoint
    region = _region(config)
    if region:
        properties["s3.region"] = region  # else pyiceberg asks AWS for the bucket's region
    if config.catalog_uri.startswith(GLUE):
        return _glue(config.catalog_uri, properties)
    # The catalog's own tables are created here rather than by pyiceberg, which fails when
    # another bridge starting at the same time creates them between its check and its creation.
    catalog = SqlCatalog("orasi", init_catalog_tables="false", **properties)
    attempt = 1
    while True:
        try:
            catalog.create_tables()  # each one only if it does not exist
            return catalog
        except sqlalchemy.exc.DBAPIError:
            if attempt == SETUP_ATTEMPTS:
                catalog.close()
                raise
            attempt += 1


GLUE = "glue://"


def _glue(uri: str, properties: dict[str, str]) -> Catalog:
    """pyiceberg's Glue catalog for ``glue://[REGION][?KEY=VALUE&…]``: each KEY is a ``glue.KEY``
    property of pyiceberg's (``endpoint``, ``id`` the catalog's account, ``profile-name``, …);
    credentials come from the AWS chain. Needs boto3 (the ``glue`` extra)."""
    try:
        from pyiceberg.catalog.glue import GlueCatalog  # imports boto3
    except ImportError as error:
        raise RuntimeError(f"{uri}: the Glue catalog needs boto3: pip install 'orasi[glue]'") from error
    parsed = urlparse(uri)
    glue = {f"glue.{key}": value for key, value in parse_qsl(parsed.query)}
    if parsed.netloc:
        glue["glue.region"] = parsed.netloc
    del properties["uri"]
    return GlueCatalog("orasi", **properties, **glue)


def _region(config: Config) -> str | None:
    return config.s3.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


COMMIT_NUM_RETRIES = "commit.retry.num-retries"
"""pyiceberg's own retries of a conflicting commit, which the writer's tables set to 0: pyiceberg
would retry an append on the refreshed table without the check of the batch ids other bridges
committed meanwhile that the writer makes before each attempt (``commits.Committer.commit``)."""


def ensure_table(
    catalog: Catalog,
    name: str,
    set_up: Callable[[Table], None] | None = None,
    schema: pa.Schema | Schema | None = None,
) -> Table:
    """Load ``orasi.<name>``, creating it partitioned by day(time) (month(time) for ``MONTHLY``
    tables) and tenant, sorted by service,
    time, with ``commit.retry.num-retries`` 0. Creation takes two commits (pyiceberg assigns field
    ids when it creates the table), so a table found without its partitioning (a first start that
    died between them) gets it now. Bridges sharing a lake may start together: a table or a
    change another one made first is taken as it is (and checked again).

    Another layout (the global lake's, ``replica_tables``) passes its own ``set_up`` and, for a
    table not in ``TABLES``, its ``schema``."""
    identifier = f"{NAMESPACE}.{name}"
    attempt = 1
    while True:
        try:
            catalog.create_namespace_if_not_exists(NAMESPACE)
            try:
                table = catalog.load_table(identifier)
            except NoSuchTableError:
                table = catalog.create_table(identifier, schema=TABLES[name] if schema is None else schema)
            (set_up or _set_up)(table)
            return table
        except (TableAlreadyExistsError, CommitFailedException, sqlalchemy.exc.IntegrityError):
            if attempt == SETUP_ATTEMPTS:
                raise  # another starter won every race (a conflict's cause is in its message)
            attempt += 1


def _set_up(table: Table) -> None:
    """Give ``table`` what it lacks of its columns (``TABLES``' optional ones added since it was
    made), partitioning, sort order and commit property, in one commit (none when it lacks
    nothing).

    A ``MONTHLY`` table found partitioned by day (made before it was monthly) gets its spec evolved:
    ``time_day`` replaced by ``time_month``. Its files keep their day spec (Iceberg plans each file
    by its own spec) until compaction or retention rewrites them; new files are monthly."""
    name = table.name()[-1]
    time_transform: Transform[Any, Any] = MonthTransform() if name in MONTHLY else DayTransform()
    time_field = f"time_{'month' if name in MONTHLY else 'day'}"
    partitioned = not table.spec().is_unpartitioned()
    stale = [
        spec_field.name
        for spec_field in table.spec().fields
        if table.schema().find_field(spec_field.source_id).name == "time"
        and type(spec_field.transform) is not type(time_transform)
    ]
    sorted_ = not table.sort_order().is_unsorted
    retries_off = table.properties.get(COMMIT_NUM_RETRIES) == "0"
    names = {field.name for field in table.schema().fields}
    missing = [field.name for field in TABLES[table.name()[-1]] if field.name not in names]
    if partitioned and not stale and sorted_ and retries_off and not missing:
        return
    with table.transaction() as transaction:
        if missing:
            # A lake made by an older bridge: its new optional columns are added (at the end, as
            # in TABLES); files written before read them as null.
            with transaction.update_schema() as update:
                update.union_by_name(TABLES[table.name()[-1]])
        if not partitioned:
            with transaction.update_spec() as spec:
                spec.add_field("time", time_transform, time_field)
                spec.add_identity("tenant")
        elif stale:
            with transaction.update_spec() as spec:
                for stale_name in stale:
                    spec.remove_field(stale_name)
                spec.add_field("time", time_transform, time_field)
        if not sorted_:
            with transaction.update_sort_order() as order:
                order.asc("service_name", IdentityTransform())
                order.asc("time", IdentityTransform())
        if not retries_off:
            transaction.set_properties({COMMIT_NUM_RETRIES: "0"})


def filesystem(config: Config) -> tuple[pafs.FileSystem, str]:
    """An Arrow filesystem for the warehouse's files and the URL prefix to strip from paths."""
    if config.warehouse.startswith("file://"):
        return pafs.LocalFileSystem(), "file://"
    options: dict[str, object] = {}
    if config.s3.endpoint:
        endpoint = urlparse(config.s3.endpoint)
        options["endpoint_override"] = endpoint.netloc or config.s3.endpoint
        options["scheme"] = endpoint.scheme or "https"
    region = _region(config)
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options), "s3://"


def prepare_output(fs: pafs.FileSystem, path: str) -> str:
    """``path``, its directory created first on a local filesystem (object stores need none)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rpartition("/")[0], recursive=True)
    return path
