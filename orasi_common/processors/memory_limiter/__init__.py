"""The `memory_limiter` processor."""

from orasi_common.pipeline.component import ProcessorFactory
from orasi_common.processors.memory_limiter.config import Config
from orasi_common.processors.memory_limiter.processor import MemoryLimiter

FACTORY = ProcessorFactory("memory_limiter", Config, MemoryLimiter)

__all__ = ["FACTORY", "Config", "MemoryLimiter"]
