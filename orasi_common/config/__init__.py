"""Collector-shaped YAML configuration."""

from orasi_common.config.loader import ConfigError, format_validation_error, load_config, parse_config
from orasi_common.config.model import ComponentConfig, PipelineConfig, ServiceConfig

__all__ = [
    "ComponentConfig",
    "ConfigError",
    "PipelineConfig",
    "ServiceConfig",
    "format_validation_error",
    "load_config",
    "parse_config",
]
