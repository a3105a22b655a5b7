"""The `syslog` receiver (logs only)."""

from orasi_common.pdata import Signal
from orasi_common.pipeline.component import ReceiverFactory
from orasi_common.receivers.syslog.config import Config
from orasi_common.receivers.syslog.receiver import SyslogReceiver

FACTORY = ReceiverFactory("syslog", Config, SyslogReceiver, signals=frozenset({Signal.LOGS}))

__all__ = ["FACTORY", "Config", "SyslogReceiver"]
