"""Orasi / Global Overview: every region at a glance (data in, committed, refused or lost,
and the alerts' signals).
"""

from __future__ import annotations

from typing import Any

from grafana import (
    Panel,
    dashboard,
    dropped,
    error_ratio,
    layout,
    p,
    queue_fill,
    rate,
    region_variable,
    row,
    sel,
    stat,
    target,
    timeseries,
)

AGENT = 'component="agent"'
LAKE = 'exporter=~"lake.*"'


def build() -> dict[str, Any]:
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
