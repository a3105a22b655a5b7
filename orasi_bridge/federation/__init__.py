"""Federated (global) queries: one SQL over every region's lake (``coordinator``, ``plan``)."""

from orasi_bridge.federation.config import FederationConfig, Peer
from orasi_bridge.federation.coordinator import Federation, registry_of

__all__ = ["Federation", "FederationConfig", "Peer", "registry_of"]
