"""Configuration of the `lake` exporter: catalog, warehouse and flush policy."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from pydantic import Field, field_validator

from orasi_bridge.lake.global_dedup import GlobalDedupConfig
from orasi_bridge.lake.localcache import LocalCacheConfig
from orasi_bridge.lake.maintenance.config import Duration, MaintenanceConfig
from orasi_bridge.lake.spanmetrics import SpanMetricsConfig
from orasi_bridge.stream.config import Stream
from orasi_common.config.model import ComponentConfig
from orasi_common.pipeline.wal import WalConfig


class S3Config(ComponentConfig):
    endpoint: str | None = Field(
        default=None, description="Endpoint override (e.g. http://127.0.0.1:8333); unset = AWS S3."
    )
    region: str | None = Field(default=None, description="Bucket region (default: the AWS chain's).")
    # Credentials are deliberately not configurable here: the standard AWS chain (environment,
    # shared config, web identity / IRSA, instance profile) supplies them.


def warehouse_url(value: str) -> str:
    """``value`` without a trailing slash; ValueError unless it is an s3:// or file:// URL."""
    if not value.startswith(("s3://", "file://")):
        raise ValueError("the warehouse must be an s3:// or file:// URL")
    return value.rstrip("/")


class ReplicateConfig(ComponentConfig):
    to: str = Field(description="The global warehouse: s3://bucket/prefix or file:///dir.")
    catalog_uri: str = Field(description="The global lake's catalog, as the lake's catalog_uri.")
    interval: Duration = Field(
        default=300.0,
        description="Time between two replications by the lake's elected bridge (seconds, or 90s, 5m, 1h).",
    )
    s3: S3Config | None = Field(default=None, description="S3 access to `to` (unset: the lake's).")

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return warehouse_url(value)


class Config(ComponentConfig):
    region: str = Field(default="local", description="Value of the `region` column of every row.")
    catalog_uri: str = Field(
        description="The Iceberg catalog: a SQL catalog's SQLAlchemy URL, postgresql+psycopg://… or "
        "sqlite:///…, or AWS Glue's, glue://REGION?endpoint=…&id=… (lake/catalog.py; the glue extra)."
    )
    warehouse: str = Field(description="Where data files go: s3://bucket/prefix or file:///dir.")
    s3: S3Config = Field(default_factory=S3Config, description="S3 access for an s3:// warehouse.")
    flush_interval: float = Field(default=10.0, gt=0, description="Seconds rows wait in memory at most.")
    flush_size_mib: float = Field(default=128, gt=0, description="Buffered MiB that trigger a flush.")
    max_buffer_mib: float = Field(
        default=512, gt=0, description="Buffered MiB past which ingest is refused (retryable)."
    )
    commit_retries: int = Field(default=5, ge=0, description="Retries of a conflicting Iceberg commit.")
    shutdown_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Seconds shutdown waits for a flush in flight and retries the final commit "
        "(with backoff, e.g. while other bridges commit to the same tables); what is still "
        "uncommitted then stays in the write-ahead log (keep it under the pod's grace period).",
    )
    dedup_window: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a committed batch id is remembered: a replay of the batch within "
        "them is acknowledged and not written again (see lake/committed.py).",
    )
    local_cache: LocalCacheConfig | None = Field(
        default=None,
        description="Keep copies of the data files this bridge wrote on its disk, for queries "
        "(unset: queries read every committed file from the warehouse).",
    )
    global_dedup: GlobalDedupConfig | None = Field(
        default=None,
        description="Claims of batch ids shared by every region's lake, so that a batch sent to two "
        "regions (a failover) is committed in one (lake/global_dedup.py; unset: this lake's rule only).",
    )
    replicate: ReplicateConfig | None = Field(
        default=None,
        description="Copy this lake's new snapshots into a global lake every `interval` seconds "
        "(lake/replicate.py; unset: only `orasi lake replicate` does).",
    )
    stream: Stream = Field(
        default_factory=list,
        description="Processors run in order on the rows before they are buffered: filter, "
        "transform, redact, sample, tail_sample (last) (orasi_bridge/stream; reloadable: SIGHUP, "
        "live settings).",
    )
    span_metrics: SpanMetricsConfig = Field(
        default_factory=SpanMetricsConfig,
        description="The derived tables span_metrics_1m and span_metrics_1h (its hourly rollup), "
        "written from the spans at each flush (lake/spanmetrics.py).",
    )
    wal: WalConfig | None = Field(
        default=None,
        description="Log every batch durably before acknowledging it and replay it after a crash "
        "(unset: rows wait for their commit in memory only).",
    )
    maintenance: MaintenanceConfig = Field(
        default_factory=MaintenanceConfig,
        description="Compaction, snapshot expiry and retention jobs on a schedule (lake/maintenance; "
        "every interval unset: none scheduled).",
    )

    @field_validator("warehouse")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return warehouse_url(value)

    def local_directories(self) -> dict[str, str]:
        """The directories on this machine the lake writes, by what they hold (for
        ``orasi_storage_usage_percent``): its log, its cache, a file:// warehouse, a SQLite
        catalog's directory."""
        directories = {}
        if self.wal is not None:
            directories["wal"] = self.wal.directory
        if self.local_cache is not None:
            directories["cache"] = self.local_cache.directory
        if self.warehouse.startswith("file://"):
            directories["warehouse"] = urlparse(self.warehouse).path
        if self.catalog_uri.startswith("sqlite:///"):
            database = self.catalog_uri.removeprefix("sqlite:///").split("?", 1)[0]
            directories["catalog"] = os.path.dirname(database) or "."
        return directories
