"""Attribute tables of repeated KeyValues: parsed once per distinct KeyValue, the same table."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from orasi_common.pdata.otap import attributes
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P


def _key_values(seed: int) -> list[bytes]:
    """Serialized KeyValues of every value type, most repeated, some in non-canonical encodings
    (a field written twice, an unknown field) that equal canonical rows once parsed."""
    rng = random.Random(seed)
    values = [
        AnyValue(string_value="GET"),
        AnyValue(string_value="POST"),
        AnyValue(int_value=200),
        AnyValue(int_value=-1),
        AnyValue(double_value=0.5),
        AnyValue(bool_value=True),
        AnyValue(bytes_value=b"\x00\x01"),
        AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
        AnyValue(),
    ]
    canonical = [KeyValue(key=k, value=v).SerializeToString() for k in ("a", "b", "c") for v in values]
    canonical.append(KeyValue(key="unset").SerializeToString())
    odd = [
        KeyValue(key="a").SerializeToString() + KeyValue(key="a", value=values[0]).SerializeToString(),
        KeyValue(key="b", value=values[2]).SerializeToString() + b"\x98\x06\x01",  # unknown field 99
    ]
    rows = [rng.choice(canonical) for _ in range(400)] + [rng.choice(odd) for _ in range(20)]
    rows += [KeyValue(key="id", value=AnyValue(int_value=i)).SerializeToString() for i in range(30)]
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_repeated_key_values_give_the_table_parsing_every_row_gives(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = _key_values(seed)
    parents = np.sort(np.random.default_rng(seed).integers(0, 60, len(raws)))
    assert len(set(raws)) * attributes._DISTINCT_SHARE <= len(raws)  # the distinct parse runs

    def table() -> pa.RecordBatch:
        attributes._CHOICES.clear()
        batch = attributes.encode_attributes(pa.array(raws, pa.binary()), parents, pa.uint16(), P.SPAN_ATTRS)
        assert batch is not None
        return batch

    distinct = table()
    monkeypatch.setattr(attributes, "_DISTINCT_SHARE", len(raws) + 1)  # every row parsed
    every_row = table()
    assert distinct.schema == every_row.schema
    assert distinct.equals(every_row)
