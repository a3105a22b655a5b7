"""Arrow Flight SQL, the bridge's gRPC query API (ARCHITECTURE §6), over the query engine."""

from orasi_bridge.flightsql.server import FlightSqlServer, TenantOf

__all__ = ["FlightSqlServer", "TenantOf"]
