"""Fixtures of the security tests: the receivers' tests' real bridge (its own lake on PostgreSQL +
SeaweedFS, read back through its query API) and the Flight SQL tests' in-process query API over
a real lake, reused as they are."""

from __future__ import annotations

from integration.flightsql.conftest import lake_servers, lake_space, make_writer, start_api, writer
from integration.receivers.conftest import lake, processes, receiver_servers

__all__ = [
    "lake",
    "lake_servers",
    "lake_space",
    "make_writer",
    "processes",
    "receiver_servers",
    "start_api",
    "writer",
]
