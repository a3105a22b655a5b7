"""The `batch` processor."""

from orasi_common.pipeline.component import ProcessorFactory
from orasi_common.processors.batch.config import Config
from orasi_common.processors.batch.processor import BatchProcessor

FACTORY = ProcessorFactory("batch", Config, BatchProcessor)

__all__ = ["FACTORY", "BatchProcessor", "Config"]
