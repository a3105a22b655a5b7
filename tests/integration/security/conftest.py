"""Fixtures of the security tests: the receivers' tests' real bridge (its own lake on PostgreSQL +
SeaweedFS, read back through its query API), reused as it is."""

from __future__ import annotations

from integration.receivers.conftest import lake, processes, receiver_servers

__all__ = ["lake", "processes", "receiver_servers"]
