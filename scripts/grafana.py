"""Building blocks of Grafana dashboards for Orasi's metrics (used by scripts/dashboards/).

Panels (time series, stat, table, row) and their placement on the 24-column grid, the template
variables (data source, `region`, label values), the dashboard document, and the PromQL that
the dashboards repeat: rates over Grafana's rate interval, quantiles and error ratios of
`http_request_duration_seconds`, queue fill and items lost. Every selector carries the
`region` filter.
"""

from __future__ import annotations

from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
Panel = dict[str, Any]


def sel(*matchers: str) -> str:
    """A label selector with the dashboard's filters (region always) and ``matchers``."""
    return "{" + ", ".join(['region=~"$region"', *matchers]) + "}"


def target(expr: str, legend: str = "", **extra: Any) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, **extra}


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    unit: str = "short",
    description: str = "",
    *,
    stack: bool = False,
) -> Panel:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 20 if stack else 5,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                    "showPoints": "never",
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str, expr: str, unit: str = "short", description: str = "", red_above: float | None = None
) -> Panel:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_above is not None:
        steps.append({"color": "red", "value": red_above})
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr)],
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "textMode": "auto",
        },
    }


def table(title: str, expr: str, description: str = "") -> Panel:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, format="table", instant=True)],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
        ],
    }


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(panels: list[tuple[Panel, int, int]]) -> list[Panel]:
    """Place (panel, width, height) left to right, wrapping at 24 columns; rows span the width."""
    placed: list[Panel] = []
    x = y = line_height = 0
    for number, (panel, width, height) in enumerate(panels, start=1):
        if panel["type"] == "row":
            if x:
                x, y = 0, y + line_height
            panel["gridPos"] = {"x": 0, "y": y, "w": 24, "h": 1}
            y += 1
            line_height = 0
        else:
            if x + width > 24:
                x, y, line_height = 0, y + line_height, 0
            panel["gridPos"] = {"x": x, "y": y, "w": width, "h": height}
            x += width
            line_height = max(line_height, height)
        panel["id"] = number
        for ref, item in enumerate(panel.get("targets", [])):
            item["refId"] = chr(ord("A") + ref)
        placed.append(panel)
    return placed


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }


def query_variable(name: str, label: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-query"},
        "definition": query,
        "refresh": 2,  # on time range change
        "sort": 1,
        "multi": multi,
        "includeAll": True,
        "allValue": ".*",  # also matches series without the label (a Prometheus of one region)
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
    }


def region_variable() -> dict[str, Any]:
    return query_variable("region", "Region", "label_values(orasi_build_info, region)")


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["orasi"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["orasi"],
                "asDropdown": True,
                "title": "Orasi dashboards",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": panels,
    }


def rate(metric: str, *matchers: str) -> str:
    return f"rate({metric}{sel(*matchers)}[{RATE}])"


def p(quantile: float, by: str, *matchers: str) -> str:
    buckets = rate("http_request_duration_seconds_bucket", *matchers)
    return f"histogram_quantile({quantile}, sum by ({by}, le) ({buckets}))"


def error_ratio(by: str, *matchers: str) -> str:
    errors = rate("http_request_duration_seconds_count", 'code=~"5.."', *matchers)
    every = rate("http_request_duration_seconds_count", *matchers)
    return f"sum by ({by}) ({errors}) / sum by ({by}) ({every})"


def queue_fill(by: str, *matchers: str) -> str:
    size = f"orasi_queue_size_bytes{sel(*matchers)}"
    capacity = f"(orasi_queue_capacity_bytes{sel(*matchers)} > 0)"
    return f"max by ({by}) ({size} / {capacity})"


def dropped(by: str, *matchers: str) -> str:
    failed = rate("orasi_exporter_send_failed_items_total", *matchers)
    full = rate("orasi_exporter_enqueue_failed_items_total", *matchers)
    return f"(sum by ({by}) ({failed}) or vector(0)) + (sum by ({by}) ({full}) or vector(0))"


__all__ = [
    "DS",
    "RATE",
    "Panel",
    "dashboard",
    "datasource_variable",
    "dropped",
    "error_ratio",
    "layout",
    "p",
    "query_variable",
    "queue_fill",
    "rate",
    "region_variable",
    "row",
    "sel",
    "stat",
    "table",
    "target",
    "timeseries",
]
