"""The `filelog` receiver (logs only; the agent)."""

from orasi_common.pdata import Signal
from orasi_common.pipeline.component import ReceiverFactory
from orasi_common.receivers.filelog.config import Config
from orasi_common.receivers.filelog.receiver import FileLogReceiver

FACTORY = ReceiverFactory("filelog", Config, FileLogReceiver, signals=frozenset({Signal.LOGS}))

__all__ = ["FACTORY", "Config", "FileLogReceiver"]
