"""The `otlphttp` exporter: OTLP/HTTP protobuf POSTs carrying each batch's serialized bytes."""

from __future__ import annotations

import asyncio

import httpx
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from orasi_common.errors import PermanentError, Unauthenticated, Unavailable
from orasi_common.exporters.bearer import BearerToken
from orasi_common.exporters.otlphttp.config import Config
from orasi_common.exporters.partial_success import report_partial_success
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.exporter_helper import ExporterHelper
from orasi_common.transport import headers, status
from orasi_common.transport.compression import compress


def _error_message(response: httpx.Response) -> str:
    """The message of the google.rpc.Status an OTLP server sends with an error, if any."""
    try:
        return str(status_pb2.Status.FromString(response.content).message)
    except DecodeError:
        return response.text[:200]


class OtlpHttpExporter:
    def __init__(self, settings: Settings, config: Config) -> None:
        self._settings = settings
        self._config = config
        base = config.endpoint.rstrip("/")
        overrides = {
            Signal.TRACES: config.traces_endpoint,
            Signal.METRICS: config.metrics_endpoint,
            Signal.LOGS: config.logs_endpoint,
        }
        self._urls = {signal: overrides[signal] or base + spec.http_path for signal, spec in SPECS.items()}
        self._headers = {"content-type": "application/x-protobuf", **config.headers}
        if config.compression != "none":
            self._headers["content-encoding"] = config.compression
        self._token = BearerToken.of(config.auth, settings.logger)
        self._client: httpx.AsyncClient | None = None
        self._helper = ExporterHelper(settings, config, self._send)

    async def start(self) -> None:
        verify: bool | str = not self._config.tls.insecure_skip_verify
        if self._config.tls.ca_file and verify:
            verify = self._config.tls.ca_file
        self._client = httpx.AsyncClient(
            timeout=self._config.timeout,
            verify=verify,
            limits=httpx.Limits(max_connections=self._config.sending_queue.num_consumers),
        )
        await self._helper.start()

    async def consume(self, batch: Batch) -> None:
        await self._helper.consume(batch)

    async def _send(self, batch: Batch) -> None:
        assert self._client is not None
        body = batch.raw
        if self._config.compression != "none":
            body = await asyncio.to_thread(compress, self._config.compression, body)
        sent = {**self._headers, **dict(headers.hop_headers(batch))}
        if self._token is not None:
            sent["authorization"] = await self._token.authorization()
        try:
            response = await self._client.post(self._urls[batch.signal], content=body, headers=sent)
        except httpx.TransportError as error:
            raise Unavailable(f"cannot reach {self._urls[batch.signal]}: {error!r}") from None
        if response.status_code // 100 != 2:
            refusal = status.from_http(
                response.status_code, response.headers.get("retry-after"), _error_message(response)
            )
            if self._token is not None and isinstance(refusal, Unauthenticated):
                raise self._token.refused(refusal) from None
            raise refusal
        try:
            answer = SPECS[batch.signal].response_type.FromString(response.content)
        except DecodeError:
            raise PermanentError("the peer's success response is not an OTLP response") from None
        report_partial_success(self._settings, batch, answer)

    async def shutdown(self) -> None:
        await self._helper.shutdown()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
