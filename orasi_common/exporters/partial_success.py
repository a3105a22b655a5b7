"""Reading a peer's OTLP partial-success answer."""

from __future__ import annotations

from typing import Any

from orasi_common.pdata import SPECS, Batch
from orasi_common.pipeline.component import Settings


def report_partial_success(settings: Settings, batch: Batch, response: Any) -> None:
    """Count and log items the peer accepted the request but rejected (they are not retried)."""
    if not response.HasField("partial_success"):
        return
    partial = response.partial_success
    rejected = getattr(partial, SPECS[batch.signal].rejected_field)
    if rejected or partial.error_message:
        if rejected:
            settings.metrics.exporter_send_failed.labels(
                batch.signal.value, settings.id, "partial_success"
            ).inc(rejected)
        settings.logger.warning(
            "The peer accepted a batch only in part.",
            extra={
                "rejected_items": rejected,
                "batch_id": batch.batch_id,
                "peer_message": partial.error_message,
            },
        )
