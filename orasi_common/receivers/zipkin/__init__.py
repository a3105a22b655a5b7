"""The `zipkin` receiver (traces only)."""

from orasi_common.pdata import Signal
from orasi_common.pipeline.component import ReceiverFactory
from orasi_common.receivers.zipkin.config import Config
from orasi_common.receivers.zipkin.receiver import ZipkinReceiver

FACTORY = ReceiverFactory("zipkin", Config, ZipkinReceiver, signals=frozenset({Signal.TRACES}))

__all__ = ["FACTORY", "Config", "ZipkinReceiver"]
