"""TLS for every listener: one config (``TlsServerConfig``, written beside the other config models
in ``orasi_common.config.model``, as the admin port takes it too), one holder of its certificates
(``ServerTls``) serving both gRPC and HTTP, reloaded from disk without a restart.

    tls:
      cert_file: /etc/orasi/tls/tls.crt      # PEM chain, leaf first
      key_file: /etc/orasi/tls/tls.key
      client_ca_file: /etc/orasi/tls/ca.crt  # set: mutual TLS, clients must present a cert it signs
      min_version: "1.2"                     # or "1.3"
      reload_interval: 30                    # seconds between checks of the files (0: never)

Reloading (as cert-manager rotates a Secret's files): every ``reload_interval`` seconds the files'
identities (inode, size, mtime) are compared; when one changed and the new set loads (a
half-written pair is skipped and retried at the next check), new connections get it and
established ones keep theirs:

- gRPC: ``grpc.dynamic_ssl_server_credentials``, whose fetcher (called by gRPC for each
  handshake) hands over the new certificate configuration once;
- HTTP: the one ``ssl.SSLContext`` uvicorn serves with is loaded again in place
  (``load_cert_chain``; a new ``client_ca_file`` is added with ``load_verify_locations``: a CA
  removed from the file stays trusted until the restart).

``min_version`` applies to HTTP; gRPC's TLS stack (BoringSSL in grpcio) negotiates 1.2 or 1.3
and offers no setting for it. The Flight SQL server (pyarrow's) loads its certificate when it
starts and cannot swap it: there a rotation takes a restart.

Clients (exporters) say how they verify servers in ``orasi_common.exporters.otlp.config.TlsConfig``;
``explain_failure`` turns gRPC's handshake errors into a sentence that says which check failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from orasi_common.config.model import TlsServerConfig


@dataclass(frozen=True)
class _Material:
    cert: bytes
    key: bytes
    client_ca: bytes | None


def _identity(path: str) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class ServerTls:
    """The certificates of one listener's ``TlsServerConfig``, as an ``ssl.SSLContext`` (HTTP) and
    as gRPC server credentials, reloaded while ``start``ed (see the module docstring)."""

    def __init__(self, config: TlsServerConfig, logger: logging.Logger | None = None) -> None:
        self.config = config
        self._logger = logger or logging.getLogger("orasi.tls")
        self._paths = [p for p in (config.cert_file, config.key_file, config.client_ca_file) if p]
        self._lock = threading.Lock()  # gRPC's fetcher runs on gRPC's threads
        self._identities: list[tuple[int, int, int]] = []
        self._material: _Material | None = None
        self._pending_grpc: _Material | None = None
        self._context: ssl.SSLContext | None = None
        self.reloads = 0
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Read the files (once; ``start`` does it too); ValueError saying what does not load."""
        if self._material is None:
            try:
                identities = self._stat()
            except OSError as error:
                raise ValueError(f"cannot read a TLS file: {error}") from None
            material = self._read()
            self._context = self._new_context(material)
            self._identities, self._material = identities, material

    @property
    def context(self) -> ssl.SSLContext:
        """The server context HTTP listeners serve with (loaded again in place on changes)."""
        self.load()
        assert self._context is not None
        return self._context

    # --- loading --------------------------------------------------------------------------

    def _stat(self) -> list[tuple[int, int, int]]:
        return [_identity(path) for path in self._paths]

    def _read(self) -> _Material:
        """The files' contents; ValueError naming the file that is missing or unreadable."""
        try:
            cert = Path(self.config.cert_file).read_bytes()
            key = Path(self.config.key_file).read_bytes()
            ca = Path(self.config.client_ca_file).read_bytes() if self.config.client_ca_file else None
        except OSError as error:
            raise ValueError(f"cannot read a TLS file: {error}") from None
        return _Material(cert, key, ca)

    def _new_context(self, material: _Material) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if self.config.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        )
        self._load_into(context, material)
        if material.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _load_into(self, context: ssl.SSLContext, material: _Material) -> None:
        """Load ``material`` (from the configured paths, as ssl wants files); ValueError if the
        certificate and key do not load or match."""
        try:
            context.load_cert_chain(self.config.cert_file, self.config.key_file)
            if material.client_ca is not None:
                context.load_verify_locations(cadata=material.client_ca.decode("ascii", "replace"))
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"the TLS certificate {self.config.cert_file} and key {self.config.key_file} "
                f"do not load: {error}"
            ) from None

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last load; whether new ones were
        loaded. A set that does not load (e.g. written halfway) is logged and retried later."""
        try:
            identities = self._stat()
        except OSError as error:
            self._logger.warning(
                "A TLS file is missing; keeping the loaded certificates.", extra={"error": str(error)}
            )
            return False
        if self._material is None or identities == self._identities:
            return False
        try:
            material = self._read()
            self._new_context(material)  # checks the new set before the live context takes it
            self._load_into(self.context, material)
        except ValueError as error:
            self._logger.warning(
                "New TLS files do not load yet; keeping the loaded ones.", extra={"error": str(error)}
            )
            return False
        with self._lock:
            self._identities, self._material, self._pending_grpc = identities, material, material
        self.reloads += 1
        self._logger.info("TLS certificates reloaded.", extra={"cert_file": self.config.cert_file})
        return True

    # --- gRPC -----------------------------------------------------------------------------

    @staticmethod
    def _grpc_configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], material.client_ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending_grpc = self._pending_grpc, None
        return self._grpc_configuration(pending) if pending is not None else None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials whose certificates follow the files (mutual TLS with a client CA)."""
        self.load()
        assert self._material is not None
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(self._material),
            self._fetch,
            require_client_authentication=self._material.client_ca is not None,
        )

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the files and watch them every ``reload_interval`` seconds (safe twice)."""
        await asyncio.to_thread(self.load)
        if self._task is None and self.config.reload_interval > 0:
            self._task = asyncio.create_task(self._watch(), name=f"tls-reload {self.config.cert_file}")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval)
            await asyncio.to_thread(self.reload_if_changed)

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


_FAILURES = (
    ("certificate has expired", "the server's certificate has expired (or is not yet valid)"),
    ("certificate is not yet valid", "the server's certificate is not yet valid"),
    (
        "Hostname Verification Check failed",
        "the server's certificate does not name the host dialled (fix the certificate's names, or set "
        "tls.server_name_override to a name it holds)",
    ),
    (
        "unable to get local issuer certificate",
        "the server's certificate is not signed by a CA in tls.ca_file (a wrong CA)",
    ),
    (
        "self signed certificate",
        "the server's certificate is self-signed and not in tls.ca_file (a wrong CA)",
    ),
    ("CERTIFICATE_REQUIRED", "the server requires a client certificate (set tls.cert_file and tls.key_file)"),
    ("SSLV3_ALERT_BAD_CERTIFICATE", "the server refused this client's certificate (mutual TLS: wrong CA?)"),
    ("WRONG_VERSION_NUMBER", "the server does not speak TLS (set tls.insecure: true for a plaintext peer)"),
)


def explain_failure(details: str | None) -> str:
    """gRPC's error ``details``, preceded by which TLS check failed when they show one."""
    text = details or ""
    for marker, sentence in _FAILURES:
        if marker in text:
            return f"TLS handshake failed: {sentence}; {text}"
    return text


__all__ = ["ServerTls", "TlsServerConfig", "explain_failure"]
