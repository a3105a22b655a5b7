"""`orasi catalog backup|restore`: the lake's Iceberg catalog saved and rebuilt.

The catalog holds, per table, one pointer: the location of its current metadata file in the
warehouse (which holds everything else: schemas, snapshots, manifests, data). A backup is a JSON
document of those pointers (``FORMAT``); a restore registers each table at its pointer in an
empty or new catalog (a catalog database lost or moved). Without a backup, ``from_warehouse``
finds each table's newest metadata file in the warehouse itself (pyiceberg numbers them:
``<version>-<uuid>.metadata.json`` under ``<warehouse>/<namespace>/<table>/metadata/``).

A table the catalog already has is left as it is, unless ``overwrite``: its pointer is then
replaced (the catalog's row dropped, never a file, then registered again), which moves the table
to that metadata (an older backup rolls it back; stop its
bridges first, as for ``orasi lake restore``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
from pyiceberg.exceptions import NoSuchTableError

from orasi_bridge.lake.catalog import filesystem, open_catalog
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.schema import NAMESPACE

FORMAT = "orasi-catalog-backup/1"
_METADATA_FILE = re.compile(r"^(\d+)-[0-9a-f-]+\.metadata\.json$")


class CatalogRestoreRefused(Exception):
    """Why nothing was restored."""


@dataclass(frozen=True)
class Registered:
    table: str
    metadata_location: str
    action: str  # "registered", "replaced", "unchanged", "kept" (exists elsewhere, no overwrite)


def backup(config: Config) -> dict[str, Any]:
    """The catalog's pointers of the lake's tables, with each table's current snapshot and rows
    (for a reader to check; a restore uses the pointers only)."""
    catalog = open_catalog(config)
    try:
        tables = []
        if (NAMESPACE,) in catalog.list_namespaces():
            for identifier in sorted(catalog.list_tables(NAMESPACE)):
                table = catalog.load_table(identifier)
                snapshot = table.current_snapshot()
                summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
                tables.append(
                    {
                        "name": identifier[-1],
                        "metadata_location": table.metadata_location,
                        "snapshot_id": snapshot.snapshot_id if snapshot else None,
                        "rows": int(summary.get("total-records", 0)),
                    }
                )
    finally:
        catalog.close()
    return {
        "format": FORMAT,
        "taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "warehouse": config.warehouse,
        "namespace": NAMESPACE,
        "tables": tables,
    }


def pointers_in_warehouse(config: Config) -> dict[str, str]:
    """Each table's newest metadata file found in the warehouse, by table name (blocking)."""
    fs, prefix = filesystem(config)
    root = f"{config.warehouse.removeprefix(prefix)}/{NAMESPACE}"
    try:
        tables = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except OSError as error:
        raise CatalogRestoreRefused(f"cannot list {config.warehouse}/{NAMESPACE}: {error}") from None
    found = {}
    for entry in tables:
        if entry.type != pafs.FileType.Directory:
            continue
        files = fs.get_file_info(pafs.FileSelector(f"{entry.path}/metadata", allow_not_found=True))
        versions = [
            (int(match.group(1)), info.path)
            for info in files
            if (match := _METADATA_FILE.match(info.base_name)) is not None
        ]
        if versions:
            found[entry.base_name] = prefix + max(versions)[1]
    return found


def restore(
    config: Config, pointers: dict[str, str], overwrite: bool = False, dry_run: bool = False
) -> list[Registered]:
    """Register each table of ``pointers`` (name → metadata location) in the lake's catalog."""
    if not pointers:
        raise CatalogRestoreRefused("no table to restore")
    catalog = open_catalog(config)
    try:
        done = []
        for name, location in sorted(pointers.items()):
            identifier = f"{NAMESPACE}.{name}"
            try:
                current = catalog.load_table(identifier).metadata_location
            except NoSuchTableError:
                current = None
            if current == location:
                action = "unchanged"
            elif current is not None and not overwrite:
                action = "kept"
            else:
                action = "registered" if current is None else "replaced"
                if not dry_run:
                    catalog.create_namespace_if_not_exists(NAMESPACE)
                    if current is not None:  # the SQL catalog cannot overwrite: the row goes, no file
                        catalog.drop_table(identifier)
                    catalog.register_table(identifier, location)
            done.append(Registered(name, location, action))
        return done
    finally:
        catalog.close()


def pointers_of(document: dict[str, Any]) -> dict[str, str]:
    """The pointers of a backup document, checked."""
    if document.get("format") != FORMAT:
        raise CatalogRestoreRefused(
            f"not a catalog backup (format {document.get('format')!r}, not {FORMAT!r})"
        )
    if document.get("namespace") != NAMESPACE:
        raise CatalogRestoreRefused(
            f"the backup is of namespace {document.get('namespace')!r}, not {NAMESPACE!r}"
        )
    try:
        return {str(table["name"]): str(table["metadata_location"]) for table in document["tables"]}
    except (KeyError, TypeError):
        raise CatalogRestoreRefused("the backup's tables need a name and a metadata_location each") from None
