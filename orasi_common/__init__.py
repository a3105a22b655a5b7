"""Orasi: the shared package of the agent, gateway and bridge."""

from orasi_common.version import __version__

__all__ = ["__version__"]
