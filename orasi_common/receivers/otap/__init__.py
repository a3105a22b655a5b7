"""The `otap` receiver: OTAP streams and OTLP on one gRPC port, plus OTLP/HTTP.

Its configuration is the `otlp` receiver's.
"""

from __future__ import annotations

import grpc

from orasi_common.pipeline.component import ReceiverFactory
from orasi_common.receivers.otap.arrow import ArrowStreams
from orasi_common.receivers.otlp.config import Config
from orasi_common.receivers.otlp.ingest import Ingest
from orasi_common.receivers.otlp.receiver import OtlpReceiver


class OtapReceiver(OtlpReceiver):
    def grpc_services(self, ingest: Ingest, config: Config) -> list[grpc.GenericRpcHandler]:
        return ArrowStreams(ingest, config.tenant_header).handlers()


FACTORY = ReceiverFactory("otap", Config, OtapReceiver)

__all__ = ["FACTORY", "OtapReceiver"]
