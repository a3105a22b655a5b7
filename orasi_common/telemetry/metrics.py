"""The service's own Prometheus metrics, one registry per service (names as ARCHITECTURE §8)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from orasi_common.telemetry.storage import StorageCollector
from orasi_common.version import __version__


class Metrics:
    """Every metric family a service exports; components receive it through Settings."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Info("orasi_build", "Build information.", registry=r).info(
            {"version": __version__, "service": service}
        )
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ... (read
        # from /proc at scrape time; the admin port renders /metrics in a thread).
        ProcessCollector(registry=r)
        self.storage = StorageCollector()
        r.register(self.storage)
        self.receiver_accepted = Counter(
            "orasi_receiver_accepted_items",
            "Items a receiver accepted and handed to its pipelines.",
            ["signal", "receiver", "transport"],
            registry=r,
        )
        self.receiver_refused = Counter(
            "orasi_receiver_refused_items",
            "Items a receiver refused (bad data, or pressure from its pipelines).",
            ["signal", "receiver", "transport"],
            registry=r,
        )
        self.receiver_malformed = Counter(
            "orasi_receiver_malformed_messages",
            "Messages a receiver refused or left out as malformed or untranslatable (a bad syslog "
            "frame, an oversized line, a native histogram in remote write), by reason.",
            ["receiver", "transport", "reason"],
            registry=r,
        )
        self.processor_refused = Counter(
            "orasi_processor_refused_items",
            "Items a processor refused, e.g. the memory limiter above its soft limit.",
            ["signal", "processor"],
            registry=r,
        )
        self.batch_sent = Counter(
            "orasi_processor_batch_batches_sent",
            "Batches the batch processor sent, by what triggered the send.",
            ["processor", "trigger"],
            registry=r,
        )
        self.batch_size = Histogram(
            "orasi_processor_batch_send_size_items",
            "Items per batch the batch processor sent.",
            ["processor"],
            buckets=(10, 100, 500, 1000, 2000, 5000, 10000, 50000),
            registry=r,
        )
        self.exporter_sent = Counter(
            "orasi_exporter_sent_items",
            "Items an exporter delivered (the peer accepted them).",
            ["signal", "exporter"],
            registry=r,
        )
        self.exporter_send_failed = Counter(
            "orasi_exporter_send_failed_items",
            "Items an exporter gave up on, by reason: malformed (refused as invalid data, alone "
            "after the rest of their batch was delivered), refused (another permanent error), "
            "retries_exhausted, shutdown (an in-memory queue's deadline), partial_success (the "
            "peer rejected them).",
            ["signal", "exporter", "reason"],
            registry=r,
        )
        self.exporter_enqueue_failed = Counter(
            "orasi_exporter_enqueue_failed_items",
            "Items dropped because the sending queue was full (policy drop_newest).",
            ["signal", "exporter"],
            registry=r,
        )
        self.exporter_retries = Counter(
            "orasi_exporter_retries",
            "Send attempts that failed with a retryable error and were retried.",
            ["exporter"],
            registry=r,
        )
        self.queue_size_bytes = Gauge(
            "orasi_queue_size_bytes", "Bytes in a sending queue.", ["exporter"], registry=r
        )
        self.queue_size_batches = Gauge(
            "orasi_queue_size_batches", "Batches in a sending queue.", ["exporter"], registry=r
        )
        self.queue_capacity_bytes = Gauge(
            "orasi_queue_capacity_bytes", "Capacity of a sending queue.", ["exporter"], registry=r
        )
        self.circuit_breaker_state = Gauge(
            "orasi_circuit_breaker_state",
            "Circuit breaker of an upstream endpoint: 0 closed, 1 open, 2 half-open.",
            ["exporter", "endpoint"],
            registry=r,
        )
        self.loadbalancer_routed = Counter(
            "orasi_loadbalancer_routed_items",
            "Items the load balancer delivered to each upstream endpoint.",
            ["exporter", "endpoint"],
            registry=r,
        )
        self.loadbalancer_endpoints = Gauge(
            "orasi_loadbalancer_endpoints",
            "Upstream endpoints known to the load balancer, per group.",
            ["exporter", "group"],
            registry=r,
        )
        self.discovery_up = Gauge(
            "orasi_discovery_up",
            "1 while a resolver reaches its source of endpoints (etcd), 0 while it cannot and "
            "keeps the last endpoints it knew.",
            ["resolver"],
            registry=r,
        )
        self.discovery_malformed_records = Counter(
            "orasi_discovery_malformed_records",
            "Registration records a resolver skipped because they did not parse (once per revision).",
            ["resolver"],
            registry=r,
        )
        self.config_updates = Counter(
            "orasi_config_updates",
            "Live settings (etcd /orasi/<region>/config/<kind>/<component>) a component applied "
            "(a deletion, back to the file's, included) or refused, once per revision.",
            ["component", "outcome"],
            registry=r,
        )
        self.config_revision = Gauge(
            "orasi_config_revision",
            "The etcd revision of the last live setting a component applied (a put or a deletion).",
            ["component"],
            registry=r,
        )
        self.otap_schema_resets = Counter(
            "orasi_otap_schema_resets",
            "Schema resets an OTAP exporter's stream producer made (a new Arrow IPC stream, schema "
            "and dictionaries sent again): a column appeared or changed type, or a dictionary "
            "overflowed.",
            ["signal", "payload_type"],
            registry=r,
        )
        self.wal_corrupt_segments = Counter(
            "orasi_wal_corrupt_segments",
            "Write-ahead-log segments found with a torn or corrupt tail at start (tail skipped).",
            ["queue"],
            registry=r,
        )
        self.lake_commits = Counter(
            "orasi_lake_commits",
            "Iceberg commits the lake writer made (one per table per flush).",
            ["exporter"],
            registry=r,
        )
        self.lake_commit_failures = Counter(
            "orasi_lake_commit_failures",
            "Lake flushes whose commit failed (the rows stay buffered and the commit is retried).",
            ["exporter"],
            registry=r,
        )
        self.lake_maintenance_runs = Counter(
            "orasi_lake_maintenance_runs",
            "Lake maintenance jobs run on a schedule, by action (compact, expire, retention, "
            "replicate) and outcome (success, failure).",
            ["exporter", "action", "outcome"],
            registry=r,
        )
        self.lake_maintenance_files = Counter(
            "orasi_lake_maintenance_files",
            "Files lake maintenance rewrote (compact), removed as orphans (expire), deleted with "
            "their partitions (retention) or copied into the global lake (replicate).",
            ["exporter", "action"],
            registry=r,
        )
        self.lake_maintenance_bytes = Counter(
            "orasi_lake_maintenance_bytes",
            "Bytes lake maintenance wrote (compact), removed (expire), deleted (retention) or copied "
            "(replicate).",
            ["exporter", "action"],
            registry=r,
        )
        self.lake_maintenance_duration = Histogram(
            "orasi_lake_maintenance_duration_seconds",
            "Duration of lake maintenance jobs.",
            ["exporter", "action"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
            registry=r,
        )
        self.stream_dropped = Counter(
            "orasi_stream_dropped_rows",
            "Lake rows a stream processor (filter, sample) left out, by processor and table.",
            ["exporter", "processor", "table"],
            registry=r,
        )
        self.stream_redactions = Counter(
            "orasi_stream_redactions",
            "Values the stream's redact processors replaced, by rule (never the values).",
            ["exporter", "processor", "rule"],
            registry=r,
        )
        self.stream_errors = Counter(
            "orasi_stream_errors",
            "Record batches a stream processor failed on, by the on_error action taken (pass: the "
            "rows kept as they were; drop: the rows left out).",
            ["exporter", "processor", "action"],
            registry=r,
        )
        self.stream_tail_decisions = Counter(
            "orasi_stream_tail_decisions",
            "Traces a tail_sample processor decided, by the policy that kept the trace (error, "
            "duration, expression, probability; none: dropped) and the decision (kept, dropped).",
            ["exporter", "processor", "policy", "decision"],
            registry=r,
        )
        self.stream_tail_early = Counter(
            "orasi_stream_tail_early_decisions",
            "Traces a tail_sample processor decided before their decision_wait had passed, by why "
            "(max_traces, max_spans: its memory bound; shutdown, reload).",
            ["exporter", "processor", "reason"],
            registry=r,
        )
        self.stream_tail_held = Gauge(
            "orasi_stream_tail_held",
            "Traces and spans a tail_sample processor holds for its decisions (unit: traces, spans).",
            ["exporter", "processor", "unit"],
            registry=r,
        )
        self.span_metrics_late_spans = Counter(
            "orasi_span_metrics_late_spans",
            "Spans that reached span_metrics_1m behind its watermark (rows written with late = true: "
            "corrections of minutes already reported).",
            ["exporter"],
            registry=r,
        )
        self.schema_violations = Counter(
            "orasi_schema_violations",
            "Items or attributes that violated their subject's schema at ingest, by the action taken "
            "(flag: stored with schema_violations; drop_attribute: the attribute removed; reject: "
            "the item refused with an OTLP partial success).",
            ["signal", "service", "action"],
            registry=r,
        )
        self.ratelimit_backend_up = Gauge(
            "orasi_ratelimit_backend_up",
            "1 while a component's rate limits are shared through Redis (or need no Redis), 0 while "
            "Redis does not answer and the component enforces them alone.",
            ["component"],
            registry=r,
        )
        self.ratelimit_refused = Counter(
            "orasi_ratelimit_refused",
            "Requests refused by a tenant's rate limit, by kind (items, bytes, queries); tenant is "
            "`_default` for tenants without their own limits.",
            ["component", "tenant", "kind"],
            registry=r,
        )
        self.memory_rss_bytes = Gauge(
            "orasi_process_memory_rss_bytes",
            "Resident memory of the process as the memory limiter last measured it.",
            registry=r,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Duration of HTTP requests served.",
            ["server", "handler", "method", "code"],
            registry=r,
        )

    def watch_volume(self, volume: str, directory: str) -> None:
        """Export ``orasi_storage_usage_percent{volume}`` for the filesystem holding ``directory``.

        Components call it when they are created, for each directory they write: ``volume`` names
        what the directory holds and who writes it, e.g. ``wal/otlp``, ``cache/lake``.
        """
        self.storage.watch(volume, directory)
