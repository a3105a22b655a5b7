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
    _streams: ArrowStreams | None = None

    def grpc_services(self, ingest: Ingest, config: Config) -> list[grpc.GenericRpcHandler]:
        self._streams = ArrowStreams(ingest, config.tenant_header, self.logger)
        return self._streams.handlers()

    async def shutdown(self) -> None:
        if self._streams is not None:
            self._streams.stop()  # long-lived streams end between batches, not at the grace period
        await super().shutdown()


FACTORY = ReceiverFactory("otap", Config, OtapReceiver)

__all__ = ["FACTORY", "OtapReceiver"]
