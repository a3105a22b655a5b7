"""The `otlp` receiver."""

from orasi_common.pipeline.component import ReceiverFactory
from orasi_common.receivers.otlp.config import Config
from orasi_common.receivers.otlp.receiver import OtlpReceiver

FACTORY = ReceiverFactory("otlp", Config, OtlpReceiver)

__all__ = ["FACTORY", "Config", "OtlpReceiver"]
