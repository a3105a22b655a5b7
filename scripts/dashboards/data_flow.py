"""Orasi / Data Flow: items followed through agent → gateway → bridge → lake (accepted,
delivered, refused, lost, queued), filtered by signal.
"""

from __future__ import annotations

from typing import Any

from grafana import Panel, dashboard, layout, queue_fill, rate, region_variable, row, sel, target, timeseries


def build() -> dict[str, Any]:
    sig = 'signal=~"$signal"'
    panels: list[tuple[Panel, int, int]] = [
        (row("agent → gateway → bridge → lake"), 24, 1),
        (
            timeseries(
                "Accepted at each tier",
                [
                    target(
                        f"sum by (component) ({rate('orasi_receiver_accepted_items_total', sig)})",
                        "{{component}}",
                    )
                ],
                "short",
                "Items/s accepted by agents, gateways and bridges: the lines match when nothing is lost.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Delivered by each tier",
                [
                    target(
                        f"sum by (component) ({rate('orasi_exporter_sent_items_total', sig)})",
                        "{{component}}",
                    )
                ],
                "short",
                "Items/s each tier's exporters delivered (the bridge: rows committed to the lake).",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Refused and lost, by tier",
                [
                    target(
                        f"sum by (component) ({rate('orasi_receiver_refused_items_total', sig)})",
                        "refused {{component}}",
                    ),
                    target(
                        f"sum by (component, reason) ({rate('orasi_exporter_send_failed_items_total', sig)})",
                        "given up {{component}} {{reason}}",
                    ),
                    target(
                        f"sum by (component) ({rate('orasi_exporter_enqueue_failed_items_total', sig)})",
                        "queue full {{component}}",
                    ),
                ],
                "short",
                "Items/s refused by receivers (senders retry), given up by exporters, dropped by full queues",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Malformed input, by receiver and reason",
                [
                    target(
                        "sum by (component, receiver, reason) "
                        f"({rate('orasi_receiver_malformed_messages_total')})",
                        "{{component}} {{receiver}} {{reason}}",
                    )
                ],
                "short",
                "Messages/s receivers of other protocols (syslog, remote write, Zipkin, filelog) refused "
                "or left out: bad framing, too long, malformed, untranslatable.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "OTAP schema resets",
                [
                    target(
                        "sum by (component, signal, payload_type) "
                        f"({rate('orasi_otap_schema_resets_total', sig)})",
                        "{{component}} {{signal}} {{payload_type}}",
                    )
                ],
                "short",
                "Resets/s of the OTAP exporters' streams (schema and dictionaries sent again): a column "
                "appeared or changed type, or a dictionary overflowed. Near zero once streams settle.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Rate limits: refusals, by tenant and kind",
                [
                    target(
                        f"sum by (component, tenant, kind) ({rate('orasi_ratelimit_refused_total')})",
                        "{{component}} {{tenant}} {{kind}}",
                    )
                ],
                "reqps",
                "Requests/s refused by a tenant's rate limit (items/s, bytes/s, concurrent queries), "
                "answered 429 / RESOURCE_EXHAUSTED with a retry delay; tenant is _default for tenants "
                "without limits of their own.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Rate limits shared through Redis",
                [
                    target(
                        f"min by (component, pod, exported_component) (orasi_ratelimit_backend_up{sel()})",
                        "{{pod}} {{exported_component}}",
                    )
                ],
                "short",
                "1 while a component's limits are shared through Redis; 0 while Redis does not answer "
                "and the component enforces them alone (the replicas together admit up to their number "
                "times the limits).",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Schema violations at ingest, by subject service and action",
                [
                    target(
                        f"sum by (signal, service, action) ({rate('orasi_schema_violations_total', sig)})",
                        "{{signal}}.{{service}} {{action}}",
                    )
                ],
                "short",
                "Items or attributes/s the bridges found violating their subject's schema in the registry: "
                "flag (stored with schema_violations), drop_attribute (attribute removed), reject.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Late spans in span_metrics_1m",
                [target(f"sum by (pod) ({rate('orasi_span_metrics_late_spans_total')})", "{{pod}}")],
                "short",
                "Spans/s that reached span_metrics_1m behind its watermark (allowed_lateness): written as "
                "correction rows (late = true) of minutes already reported, never dropped.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Retries",
                [
                    target(
                        f"sum by (component, exporter) ({rate('orasi_exporter_retries_total')})",
                        "{{component}} {{exporter}}",
                    )
                ],
                "short",
                "Send attempts/s that failed with a retryable error and were retried.",
            ),
            12,
            8,
        ),
        (row("Batches and queues"), 24, 1),
        (
            timeseries(
                "Batches sent, by trigger",
                [
                    target(
                        f"sum by (component, trigger) ({rate('orasi_processor_batch_batches_sent_total')})",
                        "{{component}} {{trigger}}",
                    )
                ],
                "short",
                "Batches/s the batch processors sent, by what triggered the send (size, timeout, ...).",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Batch size",
                [
                    target(
                        "histogram_quantile(0.5, sum by (component, le) "
                        f"({rate('orasi_processor_batch_send_size_items_bucket')}))",
                        "p50 {{component}}",
                    ),
                    target(
                        "histogram_quantile(0.95, sum by (component, le) "
                        f"({rate('orasi_processor_batch_send_size_items_bucket')}))",
                        "p95 {{component}}",
                    ),
                ],
                "short",
                "Items per batch sent.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Queued",
                [
                    target(
                        f"sum by (component, exporter) (orasi_queue_size_bytes{sel()})",
                        "bytes {{component}} {{exporter}}",
                    ),
                ],
                "bytes",
                "Bytes in the sending queues (a logged queue: in its write-ahead log).",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Queued batches",
                [
                    target(
                        f"sum by (component, exporter) (orasi_queue_size_batches{sel()})",
                        "{{component}} {{exporter}}",
                    )
                ],
                "short",
                "Batches waiting in the sending queues.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Queue fill",
                [target(queue_fill("component, exporter"), "{{component}} {{exporter}}")],
                "percentunit",
                "The fullest queue of each exporter, over its capacity.",
            ),
            12,
            8,
        ),
        (row("Load balancing and the lake"), 24, 1),
        (
            timeseries(
                "Routed, by upstream endpoint",
                [
                    target(
                        f"sum by (endpoint) ({rate('orasi_loadbalancer_routed_items_total')})",
                        "{{endpoint}}",
                    )
                ],
                "short",
                "Items/s the gateways' load balancers delivered to each bridge.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Endpoints known, and breakers",
                [
                    target(f"sum by (group) (orasi_loadbalancer_endpoints{sel()})", "endpoints {{group}}"),
                    target(f"count(orasi_circuit_breaker_state{sel()} == 1) or vector(0)", "open breakers"),
                    target(
                        f"count(orasi_circuit_breaker_state{sel()} == 2) or vector(0)", "half-open breakers"
                    ),
                ],
                "short",
                "Upstream endpoints per group (primary, failover), and breakers open or half-open.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Lake commits and failures per minute",
                [
                    target(
                        f"sum by (pod, instance) ({rate('orasi_lake_commits_total')}) * 60",
                        "commits {{pod}}{{instance}}",
                    ),
                    target(
                        f"sum by (pod, instance) ({rate('orasi_lake_commit_failures_total')}) * 60",
                        "failed {{pod}}{{instance}}",
                    ),
                ],
                "short",
                "Iceberg commits (one per table per flush) and failed flushes.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Lake maintenance runs per hour",
                [
                    target(
                        f"sum by (pod, action, outcome) ({rate('orasi_lake_maintenance_runs_total')}) * 3600",
                        "{{action}} {{outcome}} {{pod}}",
                    ),
                    target(
                        f"sum by (action) ({rate('orasi_lake_maintenance_files_total')}) * 3600",
                        "{{action}} files",
                    ),
                ],
                "short",
                "Compaction, expiry and retention runs of the elected bridge (OrasiLakeMaintenanceFailing), "
                "and the files they rewrote or removed.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Stream processors: rows dropped, values redacted, failures per second",
                [
                    target(
                        f"sum by (processor, table) ({rate('orasi_stream_dropped_rows_total')})",
                        "dropped {{processor}} {{table}}",
                    ),
                    target(f"sum by (rule) ({rate('orasi_stream_redactions_total')})", "redacted {{rule}}"),
                    target(
                        f"sum by (processor, action) ({rate('orasi_stream_errors_total')})",
                        "failed {{processor}} ({{action}})",
                    ),
                ],
                "short",
                "The lake's stream section: rows left out by filter and sample, values replaced per "
                "redact rule, record batches a processor failed on (by on_error).",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Tail sampling: traces decided per second, and held",
                [
                    target(
                        f"sum by (policy, decision) ({rate('orasi_stream_tail_decisions_total')})",
                        "{{decision}} by {{policy}}",
                    ),
                    target(
                        f"sum by (reason) ({rate('orasi_stream_tail_early_decisions_total')})",
                        "decided early: {{reason}}",
                    ),
                    target(
                        f"sum by (pod, unit) (orasi_stream_tail_held{sel()})",
                        "held {{unit}} {{pod}}",
                    ),
                ],
                "short",
                "The lake's tail_sample processor: traces kept (by the policy that kept them) and "
                "dropped; traces decided before decision_wait had passed (max_traces, max_spans: its "
                "memory bound, OrasiStreamTailDecidingEarly); traces and spans held for a decision.",
            ),
            8,
            8,
        ),
    ]
    signal = {
        "name": "signal",
        "label": "Signal",
        "type": "custom",
        "query": "traces,metrics,logs",
        "multi": True,
        "includeAll": True,
        "allValue": "traces|metrics|logs",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }
    return dashboard(
        "orasi-data-flow",
        "Orasi / Data Flow",
        "Follow items through agent → gateway → bridge → lake: accepted, delivered, refused, lost, queued.",
        [region_variable(), signal],
        layout(panels),
    )
