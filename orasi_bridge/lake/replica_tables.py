"""The global lake's tables: a region's tables partitioned by `region` first (``replicate``), and
the replication positions their snapshots record (``positions``).

Each lake's position (the last of its snapshots copied) is in the snapshot summary of the global
table, ``orasi.replicated.<lake>``; every commit to a global table carries every lake's position
forward: replication's own (``replicate.commit``) and the maintenance jobs' (``tables.replace_files``),
so the current snapshot holds them. ``positions`` still looks back past snapshots without any
(made before the jobs carried them).
"""

from __future__ import annotations

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.table.sorting import SortDirection
from pyiceberg.transforms import IdentityTransform

from orasi_bridge.lake.catalog import COMMIT_NUM_RETRIES, ensure_table
from orasi_bridge.lake.schema import TABLES

POSITION = "orasi.replicated."
"""Snapshot summary key prefix of the global tables: ``orasi.replicated.<lake>`` = the id of the
last snapshot of that lake's table copied (the lake is named by its `region`)."""


def positions(table: Table) -> dict[str, int]:
    """Each lake's position in the global ``table``: the ``orasi.replicated.*`` properties of its
    newest snapshot that has any ({} for a table that is not a global one)."""
    snapshots = {snapshot.snapshot_id: snapshot for snapshot in table.snapshots()}
    snapshot = table.current_snapshot()
    while snapshot is not None:
        properties = snapshot.summary.additional_properties if snapshot.summary else {}
        found = {
            key.removeprefix(POSITION): int(value)
            for key, value in properties.items()
            if key.startswith(POSITION)
        }
        if found:
            return found
        parent = snapshot.parent_snapshot_id
        snapshot = None if parent is None else snapshots.get(parent)
    return {}


def position_properties(found: dict[str, int]) -> dict[str, str]:
    """The snapshot summary properties recording the lakes' positions ``found``."""
    return {f"{POSITION}{lake}": str(position) for lake, position in found.items()}


def ensure_replica(catalog: Catalog, name: str, source: Table) -> Table:
    """Load ``orasi.<name>`` of the global lake, creating it with the source table's schema
    (``TABLES``' when it is one of them), partitioned by identity(region) then as ``source`` is,
    sorted as ``source`` is, with pyiceberg's commit retries off (``replicate.commit`` retries,
    carrying every lake's position forward). Columns ``source`` has and the table lacks are added.
    A table partitioned otherwise is partitioned again while it has no snapshot (one that a lake
    exporter naming the global lake, e.g. for its maintenance, created in the regional layout at
    its start), and refused once it has one: its files could not be registered as they are."""
    schema = TABLES.get(name, source.schema())
    return ensure_table(catalog, name, lambda table: _set_up(table, source), schema)


def partitioning(source: Table) -> list[tuple[str, str, str]]:
    """The global table's partition fields as (source column, transform, name): region, then the
    source table's."""
    return [("region", str(IdentityTransform()), "region"), *_fields(source)]


def _fields(table: Table) -> list[tuple[str, str, str]]:
    """``table``'s partition fields as (source column, transform, name)."""
    return [(_column(table, f.source_id), str(f.transform), f.name) for f in table.spec().fields]


def _column(table: Table, field_id: int) -> str:
    name = table.schema().find_column_name(field_id)
    if name is None:
        raise ValueError(f"{'.'.join(table.name())} has no column of field id {field_id}")
    return name


def _set_up(table: Table, source: Table) -> None:
    names = {field.name for field in table.schema().fields}
    missing = [field.name for field in source.schema().fields if field.name not in names]
    partitioned = not table.spec().is_unpartitioned()
    sorted_ = not table.sort_order().is_unsorted or source.sort_order().is_unsorted
    retries_off = table.properties.get(COMMIT_NUM_RETRIES) == "0"
    laid_out = partitioned and _fields(table) == partitioning(source)
    if partitioned and not laid_out and table.current_snapshot() is not None:
        raise ValueError(
            f"the global table {'.'.join(table.name())} is partitioned as {_fields(table)}, not as "
            f"{partitioning(source)}: replicate into another warehouse or catalog"
        )
    if not missing and laid_out and sorted_ and retries_off:
        return
    with table.transaction() as transaction:
        if missing:
            with transaction.update_schema() as update:
                update.union_by_name(source.schema())
        if not laid_out:
            with transaction.update_spec() as spec:
                for field in table.spec().fields:  # an empty table's regional layout
                    spec.remove_field(field.name)
                spec.add_identity("region")
                for field in source.spec().fields:
                    spec.add_field(_column(source, field.source_id), field.transform, field.name)
        if not sorted_:
            with transaction.update_sort_order() as order:
                for sort_field in source.sort_order().fields:
                    add = order.asc if sort_field.direction == SortDirection.ASC else order.desc
                    add(_column(source, sort_field.source_id), sort_field.transform, sort_field.null_order)
        if not retries_off:
            transaction.set_properties({COMMIT_NUM_RETRIES: "0"})
