"""The one entry from a receiver into its pipelines: every decoded request goes through ``Ingest``.

OTLP/gRPC (in the pipelines' process or handed over by worker processes), OTLP/HTTP, OTAP
streams and the receivers of other protocols (HTTP pushes, syslog over TCP and UDP, tailed
files) all call ``Ingest.consume``, which hands the batch to the signal's pipeline and counts
it as accepted or refused under its transport's label. ``Ingest.tenant`` says whose a request
is: its tenant header's, or, when the receiver names an `auth` extension, its bearer token's
(``Authenticator.tenant``, scope ``ingest``), refusing it with UNAUTHENTICATED / 401 or
PERMISSION_DENIED / 403 before it is read. When the receiver names a `ratelimit` extension, a
batch is admitted by its tenant's rate limits before it is handed on (``RateLimiter.admit``):
refused, it is answered RESOURCE_EXHAUSTED / 429 with the retry delay, and counted as refused —
nothing refused was acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping

from orasi_common.errors import NotFound, OrasiError, PartialSuccess
from orasi_common.extensions.auth import Authenticator
from orasi_common.extensions.ratelimit import RateLimiter
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.transport import headers

TRANSPORTS = ("grpc", "http", "otap", "tcp", "udp", "file")


class Ingest:
    """The receiver's side of its pipelines: one consume per request, metrics per outcome."""

    def __init__(
        self,
        settings: Settings,
        consumers: Mapping[Signal, Consumer],
        auth: Authenticator | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._consumers = consumers
        self.auth = auth
        self.limiter = limiter
        self._id = settings.id
        metrics = settings.metrics
        self._accepted = {
            (signal, transport): metrics.receiver_accepted.labels(signal.value, settings.id, transport)
            for signal in Signal
            for transport in TRANSPORTS
        }
        self._refused = {
            (signal, transport): metrics.receiver_refused.labels(signal.value, settings.id, transport)
            for signal in Signal
            for transport in TRANSPORTS
        }

    async def start(self) -> None:
        """Start the `auth` and `ratelimit` clients the receiver names (before it listens)."""
        if self.auth is not None:
            await self.auth.start()
        if self.limiter is not None:
            await self.limiter.start()

    async def shutdown(self) -> None:
        """After the receiver stopped listening."""
        if self.limiter is not None:
            await self.limiter.shutdown()
        if self.auth is not None:
            await self.auth.shutdown()

    async def tenant(self, authorization: str | None, tenant_header: str | None) -> str:
        """The request's tenant (see the module docstring); raises the classified refusal."""
        if self.auth is not None:
            tenant_header = await self.auth.tenant(authorization, "ingest", tenant_header)
        return headers.incoming_tenant(tenant_header)

    def check_signal(self, signal: Signal) -> Consumer:
        consumer = self._consumers.get(signal)
        if consumer is None:
            raise NotFound(f"this receiver is in no {signal.value} pipeline")
        return consumer

    async def consume(self, batch: Batch, transport: str) -> None:
        """Consume ``batch``; on refusal count it and re-raise the classified error.

        A request without items (valid, but empty) is answered with success and not forwarded. A
        ``PartialSuccess`` counts its rejected items as refused, the others as accepted, and is
        re-raised for the receiver's answer (``transport.partial``).
        """
        consumer = self.check_signal(batch.signal)
        if batch.items == 0:
            return
        try:
            if self.limiter is not None:
                await self.limiter.admit(batch.tenant, batch.items, batch.size_bytes)
            await consumer.consume(batch)
        except PartialSuccess as outcome:
            rejected = min(outcome.rejected, batch.items)
            self._refused[batch.signal, transport].inc(rejected)
            self._accepted[batch.signal, transport].inc(batch.items - rejected)
            raise
        except OrasiError:
            self._refused[batch.signal, transport].inc(batch.items)
            raise
        self._accepted[batch.signal, transport].inc(batch.items)
