"""The Iceberg catalog and tables (pyiceberg's SQL catalog), and Arrow filesystem access to files."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform

from orasi_bridge.lake.config import Config
from orasi_bridge.lake.schema import NAMESPACE, TABLES


def open_catalog(config: Config) -> Catalog:
    """Connect to the SQL catalog (creating its tables on first use). Blocking."""
    properties: dict[str, str] = {"uri": config.catalog_uri, "warehouse": config.warehouse}
    if config.warehouse.startswith("file://"):
        Path(urlparse(config.warehouse).path).mkdir(parents=True, exist_ok=True)
    if config.s3.endpoint:
        properties["s3.endpoint"] = config.s3.endpoint
    region = _region(config)
    if region:
        properties["s3.region"] = region  # else pyiceberg asks AWS for the bucket's region
    return SqlCatalog("orasi", **properties)


def _region(config: Config) -> str | None:
    return config.s3.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def ensure_table(catalog: Catalog, name: str) -> Table:
    """Load ``orasi.<name>``, creating it partitioned by day(time) and tenant, sorted by service,
    time. Creation takes two commits (pyiceberg assigns field ids when it creates the table), so
    a table found without its partitioning (a first start that died between them) gets it now."""
    catalog.create_namespace_if_not_exists(NAMESPACE)
    identifier = f"{NAMESPACE}.{name}"
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        table = catalog.create_table(identifier, schema=TABLES[name])
    if table.spec().is_unpartitioned() or table.sort_order().is_unsorted:
        with table.transaction() as transaction:
            if table.spec().is_unpartitioned():
                with transaction.update_spec() as spec:
                    spec.add_field("time", DayTransform(), "time_day")
                    spec.add_identity("tenant")
            if table.sort_order().is_unsorted:
                with transaction.update_sort_order() as order:
                    order.asc("service_name", IdentityTransform())
                    order.asc("time", IdentityTransform())
    return table


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
