"""The Jaeger query API on the bridge's REST port (ARCHITECTURE §6): Grafana's Jaeger data source
and the Jaeger UI read the lake's traces through it."""

from orasi_bridge.jaeger.api import mount

__all__ = ["mount"]
