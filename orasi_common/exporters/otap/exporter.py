"""The `otap` exporter: a queue and retries in front of one OTAP peer."""

from __future__ import annotations

from orasi_common.exporters.grpc_exporter import GrpcExporter
from orasi_common.exporters.otap.client import OtapClient


class OtapExporter(GrpcExporter):
    client_type = OtapClient
    record_endpoint = "otap"
