"""Reading a peer's OTLP partial-success answer."""

from __future__ import annotations

from typing import Any

from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.transport import partial


def report_partial_success(settings: Settings, batch: Batch, response: Any) -> None:
    """Raise the ``PartialSuccess`` of a peer that accepted the request but rejected items (the
    exporter helper counts and logs it, and passes it back to the sender when it can); a message
    without rejected items is a warning, logged."""
    outcome = partial.of_otlp_response(batch.signal, response)
    if outcome is not None:
        raise outcome
    if response.HasField("partial_success") and response.partial_success.error_message:
        settings.logger.warning(
            "The peer accepted a batch with a warning.",
            extra={"batch_id": batch.batch_id, "peer_message": response.partial_success.error_message},
        )
