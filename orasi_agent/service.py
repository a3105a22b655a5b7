"""The agent as the `orasi` command finds it: entry point ``agent`` of ``orasi.services``."""

from orasi_common.plugins import ServicePlugin

SERVICE = ServicePlugin(
    name="agent",
    help="run the per-node agent",
    factories="orasi_agent.factories:FACTORIES",
    tune_allocators=False,  # it forwards bytes; its memory budget has no room for heap slack
)
