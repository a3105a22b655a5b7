"""A partial success (``errors.PartialSuccess``) on the wire, both directions::

    PartialSuccess(message, rejected)
      OTLP gRPC / HTTP   OK / 200 with the Export*ServiceResponse's ``partial_success``:
                         ``rejected_spans|rejected_log_records|rejected_data_points`` = rejected,
                         ``error_message`` = message
      OTAP               BatchStatus OK whose ``status_message`` is
                         ``partial success: <rejected> rejected: <message>``

A BatchStatus has no field for a partial success (the OTAP specification has none), so the count
travels in the message of an OK status, which any OTAP client takes as success; Orasi's
exporters read the count back and raise the ``PartialSuccess`` to their own sender, so that a
gateway forwarding to a bridge without a sending queue answers its sender as the bridge did.
"""

from __future__ import annotations

import re
from typing import Any

from orasi_common.errors import PartialSuccess
from orasi_common.pdata import SPECS, Signal

OTAP_PREFIX = "partial success: "
_OTAP_MESSAGE = re.compile(rf"{OTAP_PREFIX}(\d+) rejected: (.*)", re.DOTALL)


def otlp_response(signal: Signal, outcome: PartialSuccess) -> Any:
    """The Export*ServiceResponse answering a request accepted but ``outcome.rejected`` items."""
    spec = SPECS[signal]
    response: Any = spec.response_type()
    setattr(response.partial_success, spec.rejected_field, outcome.rejected)
    response.partial_success.error_message = outcome.message
    return response


def of_otlp_response(signal: Signal, response: Any) -> PartialSuccess | None:
    """The partial success a peer's Export*ServiceResponse reports; None for a full success (no
    rejected item; a message alone is a warning, which the caller may log)."""
    if not response.HasField("partial_success"):
        return None
    partial = response.partial_success
    rejected = int(getattr(partial, SPECS[signal].rejected_field))
    if not rejected:
        return None
    return PartialSuccess(partial.error_message or f"the peer rejected {rejected} items", rejected)


def otap_message(outcome: PartialSuccess) -> str:
    """The ``status_message`` of the OK BatchStatus answering a partial success."""
    return f"{OTAP_PREFIX}{outcome.rejected} rejected: {outcome.message}"


def of_otap_message(message: str) -> PartialSuccess | None:
    """The partial success an OK BatchStatus's message reports; None for a full success."""
    found = _OTAP_MESSAGE.fullmatch(message)
    if found is None or not int(found.group(1)):
        return None
    return PartialSuccess(found.group(2), int(found.group(1)))


__all__ = ["OTAP_PREFIX", "of_otap_message", "of_otlp_response", "otap_message", "otlp_response"]
