"""Write Orasi's four Grafana dashboards to helm/orasi/files/monitoring/dashboards/*.json.

    python scripts/dashboards.py           # write the files
    python scripts/dashboards.py --check   # exit 1 if a file differs from what this writes

The JSON files are what Grafana imports and what the chart ships; this script is their source,
so that the four dashboards share one layout, one `region` variable and one way of writing a
query (the building blocks are in scripts/grafana.py; this file is the four dashboards). Every
query uses only metrics the services export on their admin port, with the target labels of
../helm/orasi/files/monitoring/scrape.yaml (`region`, `component`, `pod`); the tests in
tests/monitoring/ check both against a running `orasi up`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana import (  # scripts/grafana.py: run as a script, this folder is on sys.path
    RATE,
    Panel,
    dashboard,
    dropped,
    error_ratio,
    layout,
    p,
    query_variable,
    queue_fill,
    rate,
    region_variable,
    row,
    sel,
    stat,
    table,
    target,
    timeseries,
)

OUT = Path(__file__).resolve().parent.parent / "helm" / "orasi" / "files" / "monitoring" / "dashboards"


AGENT = 'component="agent"'
LAKE = 'exporter=~"lake.*"'


def global_overview() -> dict[str, Any]:
    primary = sel('group="primary"')
    panels: list[tuple[Panel, int, int]] = [
        (row("Now, over the selected regions"), 24, 1),
        (
            stat(
                "Accepted at the edge",
                f"sum({rate('orasi_receiver_accepted_items_total', AGENT)})",
                "short",
                "Items/s the agents accepted from applications (spans, metric points, log records).",
            ),
            5,
            5,
        ),
        (
            stat(
                "Committed to the lake",
                f"sum({rate('orasi_exporter_sent_items_total', LAKE)})",
                "short",
                "Rows/s the bridges committed to the Iceberg tables.",
            ),
            5,
            5,
        ),
        (
            stat(
                "Refused",
                f"sum({rate('orasi_receiver_refused_items_total')}) or vector(0)",
                "short",
                "Items/s receivers refused (malformed, or pressure from their pipelines).",
                red_above=1,
            ),
            5,
            5,
        ),
        (
            stat(
                "Dropped",
                f"sum({dropped('region')}) or vector(0)",
                "short",
                "Items/s exporters gave up on or dropped from a full queue: data lost.",
                red_above=0.001,
            ),
            5,
            5,
        ),
        (
            stat(
                "Services", f"count(orasi_build_info{sel()})", "short", "Agent, gateway and bridge processes."
            ),
            4,
            5,
        ),
        (row("Traffic by region"), 24, 1),
        (
            timeseries(
                "Accepted at the edge, by region and signal",
                [
                    target(
                        f"sum by (region, signal) ({rate('orasi_receiver_accepted_items_total', AGENT)})",
                        "{{region}} {{signal}}",
                    )
                ],
                "short",
                "Items/s accepted by the agents.",
                stack=True,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Committed to the lake, by region and signal",
                [
                    target(
                        f"sum by (region, signal) ({rate('orasi_exporter_sent_items_total', LAKE)})",
                        "{{region}} {{signal}}",
                    )
                ],
                "short",
                "Rows/s committed by the bridges' lake exporters.",
                stack=True,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Refused and dropped, by region",
                [
                    target(
                        f"sum by (region) ({rate('orasi_receiver_refused_items_total')})",
                        "refused {{region}}",
                    ),
                    target(
                        f"sum by (region) ({rate('orasi_exporter_send_failed_items_total')})",
                        "given up {{region}}",
                    ),
                    target(
                        f"sum by (region) ({rate('orasi_exporter_enqueue_failed_items_total')})",
                        "queue full {{region}}",
                    ),
                ],
                "short",
                "Items/s refused by receivers, given up by exporters, dropped by full queues.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Lake commits, by region",
                [
                    target(
                        f"sum by (region) ({rate('orasi_lake_commits_total')}) * 60", "commits {{region}}"
                    ),
                    target(
                        f"sum by (region) ({rate('orasi_lake_commit_failures_total')}) * 60",
                        "failed {{region}}",
                    ),
                ],
                "short",
                "Iceberg commits per minute (one per table per flush), and failed flushes.",
            ),
            12,
            8,
        ),
        (row("Health by region"), 24, 1),
        (
            timeseries(
                "HTTP p95 latency, by region",
                [target(p(0.95, "region"), "{{region}}")],
                "s",
                "95th percentile of HTTP requests served (OTLP/HTTP, query API). Alert above 0.5 s.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "HTTP 5xx ratio, by region",
                [target(error_ratio("region"), "{{region}}")],
                "percentunit",
                "Share of HTTP requests answered with 5xx. Alert above 5 %.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Fullest volume and queue, by region",
                [
                    target(
                        f"max by (region) (orasi_storage_usage_percent{sel()}) / 100", "volume {{region}}"
                    ),
                    target(queue_fill("region"), "queue {{region}}"),
                ],
                "percentunit",
                "The fullest WAL/cache/data volume and the fullest sending queue. Alerts above 80 %.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Open circuit breakers, by region",
                [target(f"count by (region) (orasi_circuit_breaker_state{sel()} == 1)", "{{region}}")],
                "short",
                "Upstream endpoints the gateways' load balancers have stopped sending to.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Resolvers cut off from etcd, by region",
                [
                    target(
                        f"count by (region) (orasi_discovery_up{sel()} == 0) or sum by (region) "
                        f"(orasi_discovery_up{sel()}) * 0",
                        "{{region}}",
                    )
                ],
                "short",
                "Resolvers that cannot reach their region's etcd and route to the last endpoints they knew.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Load balancers without an upstream, by region",
                [
                    target(
                        f"count by (region) (orasi_loadbalancer_endpoints{primary} == 0) "
                        f"or sum by (region) (orasi_loadbalancer_endpoints{primary}) * 0",
                        "{{region}}",
                    )
                ],
                "short",
                "Gateways whose primary group has no endpoint (no bridge registered or resolved).",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Services, by region and component",
                [
                    target(
                        f"count by (region, component) (orasi_build_info{sel()})", "{{region}} {{component}}"
                    )
                ],
                "short",
                "Processes reporting on their admin port.",
            ),
            12,
            8,
        ),
    ]
    return dashboard(
        "orasi-global-overview",
        "Orasi / Global Overview",
        "Every region at a glance: data in, data committed, data refused or lost, and the alerts' signals.",
        [region_variable()],
        layout(panels),
    )


def regional_details() -> dict[str, Any]:
    by = "component, signal"
    panels: list[tuple[Panel, int, int]] = [
        (row("Pipelines"), 24, 1),
        (
            timeseries(
                "Accepted, by component and signal",
                [
                    target(
                        f"sum by ({by}) ({rate('orasi_receiver_accepted_items_total')})",
                        "{{component}} {{signal}}",
                    )
                ],
                "short",
                "Items/s each tier's receivers accepted.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Sent, by component and signal",
                [
                    target(
                        f"sum by ({by}) ({rate('orasi_exporter_sent_items_total')})",
                        "{{component}} {{signal}}",
                    )
                ],
                "short",
                "Items/s each tier's exporters delivered (the bridge: rows committed to the lake).",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Refused, by component and signal",
                [
                    target(
                        f"sum by ({by}) ({rate('orasi_receiver_refused_items_total')})",
                        "{{component}} {{signal}}",
                    )
                ],
                "short",
                "Items/s refused by receivers.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Given up, by component and reason",
                [
                    target(
                        f"sum by (component, reason) ({rate('orasi_exporter_send_failed_items_total')})",
                        "{{component}} {{reason}}",
                    )
                ],
                "short",
                "Items/s exporters gave up on, by reason (malformed, refused, retries_exhausted, ...).",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Sending queue fill, by pod",
                [
                    target(
                        queue_fill("component, pod, instance, exporter"),
                        "{{component}} {{pod}}{{instance}} {{exporter}}",
                    )
                ],
                "percentunit",
                "Bytes queued over capacity. Alert above 80 %.",
            ),
            12,
            8,
        ),
        (row("Tiers"), 24, 1),
        (
            timeseries(
                "Circuit breakers (0 closed, 1 open, 2 half-open)",
                [
                    target(
                        f"max by (pod, endpoint) (orasi_circuit_breaker_state{sel()})",
                        "{{pod}} → {{endpoint}}",
                    )
                ],
                "short",
                "State of each upstream endpoint's breaker in the gateways' load balancers.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Lake commits per minute",
                [
                    target(f"sum by (pod) ({rate('orasi_lake_commits_total')}) * 60", "{{pod}} commits"),
                    target(
                        f"sum by (pod) ({rate('orasi_lake_commit_failures_total')}) * 60", "{{pod}} failed"
                    ),
                ],
                "short",
                "Iceberg commits and failed flushes, per bridge.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Instances, by component",
                [target(f"count by (component) (orasi_build_info{sel()})", "{{component}}")],
                "short",
                "Processes reporting, per tier.",
            ),
            8,
            8,
        ),
        (row("Latency and storage"), 24, 1),
        (
            timeseries(
                "HTTP latency, by component",
                [
                    target(p(0.5, "component"), "p50 {{component}}"),
                    target(p(0.95, "component"), "p95 {{component}}"),
                    target(p(0.99, "component"), "p99 {{component}}"),
                ],
                "s",
                "Quantiles of http_request_duration_seconds (OTLP/HTTP receivers, query API).",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "HTTP requests, by component and code",
                [
                    target(
                        f"sum by (component, code) ({rate('http_request_duration_seconds_count')})",
                        "{{component}} {{code}}",
                    )
                ],
                "reqps",
                "Requests/s served, by status code.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Volume usage, by pod and volume",
                [
                    target(
                        f"max by (component, pod, volume) (orasi_storage_usage_percent{sel()})",
                        "{{component}} {{pod}} {{volume}}",
                    )
                ],
                "percent",
                "Used space of the filesystems holding WAL, cache and data directories. Alert above 80 %.",
            ),
            8,
            8,
        ),
    ]
    return dashboard(
        "orasi-regional-details",
        "Orasi / Regional Details",
        "One region's tiers: what each accepted, sent, refused and dropped, queues, breakers, commits.",
        [region_variable()],
        layout(panels),
    )


def component_health() -> dict[str, Any]:
    picked = ('component=~"$component"', 'instance=~"$instance"')
    legend = "{{component}} {{pod}} {{instance}}"
    panels: list[tuple[Panel, int, int]] = [
        (row("Process"), 24, 1),
        (
            timeseries(
                "Resident memory",
                [
                    target(f"process_resident_memory_bytes{sel(*picked)}", legend),
                    target(
                        f"orasi_process_memory_rss_bytes{sel(*picked)}", "memory limiter's view " + legend
                    ),
                ],
                "bytes",
                "RSS from /proc, and as the memory limiter last measured it.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "CPU",
                [target(f"rate(process_cpu_seconds_total{sel(*picked)}[{RATE}])", legend)],
                "percentunit",
                "CPU seconds per second of the service process (not its OTLP/gRPC worker processes).",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Open file descriptors",
                [target(f"process_open_fds{sel(*picked)} / process_max_fds{sel(*picked)}", legend)],
                "percentunit",
                "Open descriptors over the limit.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Uptime",
                [target(f"time() - process_start_time_seconds{sel(*picked)}", legend)],
                "s",
                "Seconds since the process started (a drop is a restart).",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Memory limiter refusals",
                [
                    target(
                        "sum by (component, instance, processor) "
                        f"({rate('orasi_processor_refused_items_total', *picked)})",
                        "{{component}} {{instance}} {{processor}}",
                    )
                ],
                "short",
                "Items/s refused by processors, e.g. the memory limiter above its soft limit.",
            ),
            8,
            8,
        ),
        (
            table(
                "Versions",
                f"orasi_build_info{sel(*picked)}",
                "Service and version of every process.",
            ),
            8,
            8,
        ),
        (row("Storage and write-ahead logs"), 24, 1),
        (
            timeseries(
                "Volume usage",
                [target(f"orasi_storage_usage_percent{sel(*picked)}", "{{instance}} {{volume}}")],
                "percent",
                "Used space of the filesystems holding WAL, cache and data directories.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Space available",
                [target(f"orasi_storage_available_bytes{sel(*picked)}", "{{instance}} {{volume}}")],
                "bytes",
                "Bytes left for the service on each volume.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Corrupt WAL segments found at start",
                [target(f"orasi_wal_corrupt_segments_total{sel(*picked)}", "{{instance}} {{queue}}")],
                "short",
                "Torn or corrupt tails the write-ahead logs skipped while recovering.",
            ),
            8,
            8,
        ),
        (row("Control plane (etcd)"), 24, 1),
        (
            timeseries(
                "Discovery reaches etcd",
                [
                    target(
                        f"min by (component, instance, resolver) (orasi_discovery_up{sel(*picked)})",
                        "{{instance}} {{resolver}}",
                    )
                ],
                "short",
                "1 while a resolver reaches etcd; 0 while it cannot and routes to the last endpoints "
                "it knew.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Malformed registration records",
                [
                    target(
                        "sum by (component, instance, resolver) "
                        f"(increase(orasi_discovery_malformed_records_total{sel(*picked)}[{RATE}]))",
                        "{{instance}} {{resolver}}",
                    )
                ],
                "short",
                "Records under the services prefix a resolver skipped because they did not parse.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Upstream endpoints known",
                [
                    target(
                        "sum by (component, instance, exporter, group) "
                        f"(orasi_loadbalancer_endpoints{sel(*picked)})",
                        "{{instance}} {{exporter}} {{group}}",
                    )
                ],
                "short",
                "Endpoints in each load balancer group, as discovery (etcd, DNS or a static list) "
                "gives them.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Live settings applied and refused",
                [
                    target(
                        "sum by (component, instance, exported_component, outcome) "
                        f"(increase(orasi_config_updates_total{sel(*picked)}[{RATE}]))",
                        "{{instance}} {{exported_component}} {{outcome}}",
                    )
                ],
                "short",
                "Live settings (etcd /orasi/<region>/config/) each instance applied or refused, by "
                "component id (the metric's component label, stored as exported_component). A "
                "refused one is logged with each bad key's path; the running values are kept.",
            ),
            24,
            8,
        ),
        (row("Requests served"), 24, 1),
        (
            timeseries(
                "HTTP latency p95, by handler",
                [target(p(0.95, "component, handler", *picked), "{{component}} {{handler}}")],
                "s",
                "95th percentile of http_request_duration_seconds.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "HTTP requests, by code",
                [
                    target(
                        f"sum by (component, code) ({rate('http_request_duration_seconds_count', *picked)})",
                        "{{component}} {{code}}",
                    )
                ],
                "reqps",
                "Requests/s by status code.",
            ),
            12,
            8,
        ),
    ]
    return dashboard(
        "orasi-component-health",
        "Orasi / Component Health",
        "One process at a time: memory, CPU, descriptors, restarts, volumes, write-ahead logs, the "
        "control plane, requests.",
        [
            region_variable(),
            query_variable(
                "component", "Component", 'label_values(orasi_build_info{region=~"$region"}, component)'
            ),
            query_variable(
                "instance",
                "Instance",
                'label_values(orasi_build_info{region=~"$region", component=~"$component"}, instance)',
            ),
        ],
        layout(panels),
    )


def data_flow() -> dict[str, Any]:
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


DASHBOARDS = {
    "global-overview": global_overview,
    "regional-details": regional_details,
    "component-health": component_health,
    "data-flow": data_flow,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is not what this writes")
    args = parser.parse_args()
    stale = []
    for name in DASHBOARDS:
        path = OUT / f"{name}.json"
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{path} is not what scripts/dashboards.py writes; run it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
