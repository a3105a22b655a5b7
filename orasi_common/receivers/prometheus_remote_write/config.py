"""Configuration of the `prometheus_remote_write` receiver."""

from __future__ import annotations

from pydantic import Field

from orasi_common.receivers.access import IngestAccess
from orasi_common.receivers.otlp.config import Endpoint
from orasi_common.transport import headers

DEFAULT_ENDPOINT = "0.0.0.0:9201"


class Config(IngestAccess):
    endpoint: Endpoint = Field(
        default=DEFAULT_ENDPOINT,
        description="host:port to serve `POST /api/v1/write` on (Prometheus's `remote_write.url` is "
        "`http://<host>:<port>/api/v1/write`).",
    )
    max_request_body_size_mib: float = Field(
        default=4, gt=0, description="Largest request body as sent (snappy-compressed); larger → 413."
    )
    max_decompressed_body_size_mib: float = Field(
        default=32,
        gt=0,
        description="Largest WriteRequest after snappy decompression (read from the block's "
        "header before decompressing); larger → 413.",
    )
    metadata_cache_size: int = Field(
        default=10_000,
        ge=0,
        description="Metric families whose metadata (type, help, unit) sent in earlier requests is "
        "kept to type later samples; the least recently told are forgotten first.",
    )
    series_cache_size: int = Field(
        default=100_000,
        ge=1,
        description="Label sets described once and kept by their bytes (a sender writes the same "
        "series every scrape); emptied when full or when a family's metadata changes.",
    )
    tenant_header: str = Field(
        default=headers.TENANT, description="Request header naming the tenant; absent = `default`."
    )
