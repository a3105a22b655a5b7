"""Telemetry data inside the pipeline: signals, the Batch type and OTLP helpers."""

from orasi_common.pdata.batch import DEFAULT_TENANT, Batch, new_batch_id
from orasi_common.pdata.signal import SPEC_BY_HTTP_PATH, SPECS, Signal, SignalSpec

__all__ = ["DEFAULT_TENANT", "SPECS", "SPEC_BY_HTTP_PATH", "Batch", "Signal", "SignalSpec", "new_batch_id"]
