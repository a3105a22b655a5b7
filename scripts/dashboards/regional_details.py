"""Orasi / Regional Details: one region's tiers (what each accepted, sent, refused and dropped,
queues, breakers, commits, latency and volumes).
"""

from __future__ import annotations

from typing import Any

from grafana import (
    Panel,
    dashboard,
    layout,
    p,
    queue_fill,
    rate,
    region_variable,
    row,
    sel,
    target,
    timeseries,
)


def build() -> dict[str, Any]:
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
