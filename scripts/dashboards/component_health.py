"""Orasi / Component Health: one process at a time (memory, CPU, descriptors, restarts,
volumes, write-ahead logs, the control plane, requests).
"""

from __future__ import annotations

from typing import Any

from grafana import (
    RATE,
    Panel,
    dashboard,
    layout,
    p,
    query_variable,
    rate,
    region_variable,
    row,
    sel,
    table,
    target,
    timeseries,
)


def build() -> dict[str, Any]:
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
