"""orasi-gateway: the regional OTLP/OTAP translation and load-balancing tier."""
