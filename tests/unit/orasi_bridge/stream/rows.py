"""Small lake record batches for the stream processors' tests (unset columns are null)."""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from pydantic import TypeAdapter

from orasi_bridge.lake.schema import LOGS, SPANS
from orasi_bridge.stream import Chain, StreamProcessor
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.telemetry.metrics import Metrics

STREAM = TypeAdapter(list[StreamProcessor])


def spans(*rows: dict[str, Any]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"tenant": "acme", **row} for row in rows], schema=SPANS)


def logs(*rows: dict[str, Any]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"tenant": "acme", **row} for row in rows], schema=LOGS)


def settings(metrics: Metrics | None = None) -> Settings:
    return Settings(
        "lake", Kind.EXPORTER, "bridge", metrics or Metrics("bridge"), logging.getLogger("test.stream")
    )


def chain(*processors: dict[str, Any], metrics: Metrics | None = None) -> Chain:
    return Chain.build(STREAM.validate_python(list(processors)), settings(metrics))


def column(rows: pa.RecordBatch, name: str) -> list[Any]:
    return rows.column(name).to_pylist()


def sample_value(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
