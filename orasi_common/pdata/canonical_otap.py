"""OTAP attribute tables and value columns as the lake's canonical values (the rule is
:mod:`orasi_common.pdata.canonical`'s), straight from the typed columns.

:func:`table_values` reads the value columns of an attribute table or of a struct such as a log
``body`` into :class:`~orasi_common.pdata.canonical.Values`, the form both OTLP and OTAP are
brought to before rendering; :func:`table_attribute_maps` gives each row of a parent table its
canonical ``MAP(VARCHAR, VARCHAR)`` from its attribute table. Only map and array rows (their
CBOR in ``ser``) are decoded one by one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orasi_common.pdata.canonical import ATTRIBUTES, TYPES, Values, empty_types, typed_key_value_maps
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.attributes import attribute_table, check_value_types, nested_value
from orasi_common.pdata.otap.common import Keys, Table, to_numpy
from orasi_common.pdata.otap.payload_types import ArrowPayloadType

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

_NO_ROWS = np.zeros(0, dtype=np.int64)


def table_values(table: Table, types: U8) -> Values:
    """The values of a table or struct with the attribute value columns, for rendering as
    canonical strings; a row whose type's column is null (or absent) is an empty value."""
    check_value_types(table, types)
    found: dict[int, tuple[I64, pa.Array]] = {}
    for code, (name, kind, typ) in _TYPED_COLUMNS.items():
        column = table.get(name, kind)
        if column is None:
            found[code] = _NO_ROWS, pa.array([], typ)
        else:
            rows = np.flatnonzero((types == code) & wire.is_valid(column))
            found[code] = rows, column.take(pa.array(rows))
    values = Values(np.zeros(len(types), dtype=np.uint8))
    for code, (rows, _) in found.items():
        values.types[rows] = code
    values.string_rows, values.string = found[1]
    values.integer_rows, values.integer = found[2][0], to_numpy(found[2][1], np.int64)
    values.double_rows, values.double = found[3][0], to_numpy(found[3][1], np.float64)
    values.boolean_rows, values.boolean = found[4][0], to_numpy(found[4][1], np.bool_)
    values.binary_rows, values.binary = found[7][0], found[7][1].to_pylist()
    values.nested_rows = np.sort(np.concatenate((found[5][0], found[6][0])))
    for row, raw in zip(values.nested_rows.tolist(), _ser(found), strict=True):
        values.nested.append(nested_value(table, types, row, raw))
    return values


# the column holding each type's values (maps and arrays: their CBOR in ``ser``)
_TYPED_COLUMNS = {
    1: ("str", "utf8", pa.string()),
    2: ("int", "i64", pa.int64()),
    3: ("double", "f64", pa.float64()),
    4: ("bool", "bool", pa.bool_()),
    5: ("ser", "binary", pa.binary()),
    6: ("ser", "binary", pa.binary()),
    7: ("bytes", "binary", pa.binary()),
}


def _ser(found: dict[int, tuple[I64, pa.Array]]) -> list[bytes]:
    """The CBOR of the map and array rows, in row order."""
    both = found[5][1].to_pylist() + found[6][1].to_pylist()
    order = np.argsort(np.concatenate((found[5][0], found[6][0])), kind="stable")
    return [both[i] for i in order.tolist()]


def table_attribute_maps(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch], payload: ArrowPayloadType, width_bits: int, keys: Keys
) -> pa.Array:
    """The canonical attribute map of each row of a parent table (``keys``) from its attribute table."""
    return typed_table_attribute_maps(tables, payload, width_bits, keys)[0]


def typed_table_attribute_maps(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch],
    payload: ArrowPayloadType,
    width_bits: int,
    keys: Keys,
    typed: bool = False,
) -> tuple[pa.Array, pa.Array | None]:
    """``table_attribute_maps``, and (``typed``) beside them each value's original type, from the
    table's ``type`` column (``canonical.TYPES``, as ``typed_wire_attribute_maps`` gives for OTLP)."""
    empty = pa.array([[]], ATTRIBUTES)
    batch = tables.get(payload)
    if batch is None or batch.num_rows == 0:
        maps = pa.repeat(empty[0], keys.n) if keys.n else empty.slice(0, 0)
        return maps, empty_types(keys.n) if typed else None
    table, parents, names, types = attribute_table(batch, payload, width_bits)
    owner = keys.of(parents, payload.name)
    by_owner = np.argsort(owner, kind="stable")
    order = pa.array(by_owner)
    values = table_values(table, types)
    per_key, kinds = typed_key_value_maps(
        names.take(order),
        values.render().take(order),
        values.types[by_owner],
        np.sort(owner),
        len(keys.unique),
    )
    maps = keys.spread(per_key, empty)
    return maps, keys.spread(kinds, pa.array([[]], TYPES)) if typed else None
