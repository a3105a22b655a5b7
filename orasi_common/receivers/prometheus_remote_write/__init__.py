"""The `prometheus_remote_write` receiver (metrics only)."""

from orasi_common.pdata import Signal
from orasi_common.pipeline.component import ReceiverFactory
from orasi_common.receivers.prometheus_remote_write.config import Config
from orasi_common.receivers.prometheus_remote_write.receiver import PrometheusRemoteWriteReceiver

FACTORY = ReceiverFactory(
    "prometheus_remote_write", Config, PrometheusRemoteWriteReceiver, signals=frozenset({Signal.METRICS})
)

__all__ = ["FACTORY", "Config", "PrometheusRemoteWriteReceiver"]
