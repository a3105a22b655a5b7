"""Metadata that travels with a batch from hop to hop (gRPC metadata and HTTP headers alike)."""

from __future__ import annotations

import re

from orasi_common.pdata import DEFAULT_TENANT, Batch, new_batch_id

TENANT = "x-orasi-tenant"
BATCH_ID = "x-orasi-batch-id"

_BATCH_ID = re.compile(r"[0-9a-f]{16,64}")


def hop_headers(batch: Batch) -> list[tuple[str, str]]:
    """The tenant and idempotency key, for the next hop's receiver."""
    return [(TENANT, batch.tenant), (BATCH_ID, batch.batch_id)]


def incoming_batch_id(value: str | None) -> str:
    """The sender's batch id when it is a well-formed one, else a new id."""
    return value if value is not None and _BATCH_ID.fullmatch(value) else new_batch_id()


def incoming_tenant(value: str | None) -> str:
    return value or DEFAULT_TENANT


__all__ = ["BATCH_ID", "TENANT", "hop_headers", "incoming_batch_id", "incoming_tenant"]
