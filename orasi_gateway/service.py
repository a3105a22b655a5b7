"""The gateway as the `orasi` command finds it: entry point ``gateway`` of ``orasi.services``."""

from orasi_common.plugins import ServicePlugin

SERVICE = ServicePlugin(
    name="gateway",
    help="run the regional gateway",
    factories="orasi_gateway.factories:FACTORIES",
    tune_allocators=True,  # it converts OTLP to Arrow in bulk
)
