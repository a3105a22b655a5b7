"""orasi-agent: the per-node OTLP pipeline."""
