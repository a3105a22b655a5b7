"""Orasi's four Grafana dashboards, one module each; ``scripts/dashboards.py`` writes them as JSON.

Each module's ``build()`` returns its dashboard document, made of the building blocks of
``scripts/grafana.py`` (panels, layout, variables, the PromQL the dashboards repeat).
``DASHBOARDS`` maps each file name (``<name>.json``) to its builder, in the order they are written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import component_health, data_flow, global_overview, regional_details

DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "global-overview": global_overview.build,
    "regional-details": regional_details.build,
    "component-health": component_health.build,
    "data-flow": data_flow.build,
}

__all__ = ["DASHBOARDS"]
