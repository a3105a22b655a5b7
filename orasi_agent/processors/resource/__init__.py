"""The `resource` processor."""

from orasi_agent.processors.resource.config import Config
from orasi_agent.processors.resource.processor import ResourceProcessor
from orasi_common.pipeline.component import ProcessorFactory

FACTORY = ProcessorFactory("resource", Config, ResourceProcessor)

__all__ = ["FACTORY", "Config", "ResourceProcessor"]
