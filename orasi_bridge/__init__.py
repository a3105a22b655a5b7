"""orasi-bridge: the regional lake writer and query service."""
