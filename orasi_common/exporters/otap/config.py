"""Configuration of the `otap` exporter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.exporters.otlp.config import GrpcClientConfig, PeerConfig
from orasi_common.pipeline.exporter_helper import ExporterConfig


class ArrowConfig(ComponentConfig):
    num_streams: int = Field(default=1, ge=1, description="Concurrent OTAP streams per signal.")
    max_stream_lifetime: float = Field(
        default=30.0, gt=0, description="Seconds after which a stream is closed and replaced."
    )
    max_batches_in_flight: int = Field(
        default=16, ge=1, description="Batches sent on one stream and not yet answered."
    )
    payload_compression: Literal["auto", "zstd", "none"] = Field(
        default="auto",
        description="Compression of the Arrow IPC buffers; auto: zstd or none per payload type, "
        "whichever travels smaller inside the gRPC message compression.",
    )
    payload_compression_level: int | None = Field(
        default=None,
        ge=1,
        le=22,
        description="zstd level of the IPC buffers (1-22); higher sends fewer bytes for more CPU. "
        "Unset: level 1 or 3 per payload type, whichever writes its first batch smallest.",
    )
    max_dictionary_size: int = Field(
        default=65535, ge=1, le=65535, description="Distinct strings per column before a schema reset."
    )
    fallback_to_otlp: bool = Field(
        default=True, description="Send OTLP when the peer does not serve OTAP (UNIMPLEMENTED)."
    )


class ArrowClientConfig(GrpcClientConfig):
    arrow: ArrowConfig = Field(default_factory=ArrowConfig, description="OTAP stream settings.")


class Config(ExporterConfig, ArrowClientConfig, PeerConfig):
    pass
