"""Configuration of the `zipkin` receiver."""

from __future__ import annotations

from pydantic import Field

from orasi_common.receivers.access import IngestAccess
from orasi_common.receivers.otlp.config import Endpoint
from orasi_common.transport import headers

DEFAULT_ENDPOINT = "0.0.0.0:9411"


class Config(IngestAccess):
    endpoint: Endpoint = Field(
        default=DEFAULT_ENDPOINT,
        description="host:port to serve `POST /api/v2/spans` on (Zipkin's own port is 9411).",
    )
    max_request_body_size_mib: float = Field(
        default=4, gt=0, description="Largest request body as sent (possibly gzip); larger → 413."
    )
    max_decompressed_body_size_mib: float = Field(
        default=16, gt=0, description="Largest body after gzip/zstd decompression; larger → 413."
    )
    tenant_header: str = Field(
        default=headers.TENANT, description="Request header naming the tenant; absent = `default`."
    )
