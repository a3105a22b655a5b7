"""The bridge as the `orasi` command finds it: entry point ``bridge`` of ``orasi.services``."""

from orasi_common.plugins import ServicePlugin

SERVICE = ServicePlugin(
    name="bridge",
    help="run the regional bridge (lake writer and query API)",
    factories="orasi_bridge.factories:FACTORIES",
    tune_allocators=True,  # it converts telemetry to lake rows and writes Parquet
    commands="orasi_bridge.commands:COMMANDS",  # orasi lake, orasi catalog
)
