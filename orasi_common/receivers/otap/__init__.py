"""The `otap` receiver: OTAP streams and OTLP on one gRPC port, plus OTLP/HTTP.

Its configuration is the `otlp` receiver's, except that OTAP streams are served in the pipelines'
process (no ``protocols.grpc.processes``).
"""

from __future__ import annotations

import grpc
from pydantic import model_validator

from orasi_common.pipeline.component import ReceiverFactory
from orasi_common.receivers.ingest import Ingest
from orasi_common.receivers.otap.arrow import ArrowStreams
from orasi_common.receivers.otlp import config as otlp
from orasi_common.receivers.otlp.receiver import OtlpReceiver


class Config(otlp.Config):
    @model_validator(mode="after")
    def _in_process(self) -> Config:
        if self.protocols.grpc is not None and self.protocols.grpc.processes:
            raise ValueError(
                "protocols.grpc.processes: the otap receiver serves its streams in the pipelines' "
                "process; use an otlp receiver for worker processes"
            )
        return self


class OtapReceiver(OtlpReceiver):
    grpc_protocol = "otap"  # its gRPC port serves OTLP too, but is registered as OTAP's
    _streams: ArrowStreams | None = None

    def grpc_services(self, ingest: Ingest, config: otlp.Config) -> list[grpc.GenericRpcHandler]:
        self._streams = ArrowStreams(ingest, config.tenant_header, self.logger)
        return self._streams.handlers()

    async def shutdown(self) -> None:
        if self._streams is not None:
            self._streams.stop()  # long-lived streams end between batches, not at the grace period
        await super().shutdown()


FACTORY = ReceiverFactory("otap", Config, OtapReceiver)

__all__ = ["FACTORY", "Config", "OtapReceiver"]
