"""ServerTls: loads, reloads on change (in place for HTTP, once through the fetcher for gRPC),
keeps the loaded set when new files do not load; explain_failure; the client TlsConfig's rules."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from orasi_common.exporters.otlp.config import TlsConfig
from orasi_common.testing.certs import Authority
from orasi_common.transport.tls import ServerTls, TlsServerConfig, explain_failure


@pytest.fixture
def ca() -> Authority:
    return Authority.create("unit CA")


def server_tls(ca: Authority, directory: Path, **extra: object) -> ServerTls:
    issued = ca.issue(directory, "server")
    config = TlsServerConfig(cert_file=str(issued.cert), key_file=str(issued.key), **extra)  # type: ignore[arg-type]
    return ServerTls(config)


def bump(path: Path) -> None:
    """Make a file's identity change even within one mtime tick."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_reload_only_when_the_files_change(ca: Authority, tmp_path: Path) -> None:
    tls = server_tls(ca, tmp_path)
    tls.load()
    credentials = tls.grpc_credentials()
    assert credentials is not None
    assert tls._fetch() is None  # nothing new for gRPC yet
    assert not tls.reload_if_changed()
    context = tls.context
    ca.issue(tmp_path, "server")  # new files at the same paths
    bump(tmp_path / "server.crt")
    assert tls.reload_if_changed()
    assert tls.context is context  # reloaded in place: the server keeps serving with it
    assert tls.reloads == 1
    assert tls._fetch() is not None  # gRPC gets the new configuration once
    assert tls._fetch() is None


def test_files_that_do_not_load_are_skipped_and_retried(ca: Authority, tmp_path: Path) -> None:
    tls = server_tls(ca, tmp_path)
    tls.load()
    (tmp_path / "server.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nhalf")
    assert not tls.reload_if_changed()
    assert tls.reloads == 0
    assert tls._fetch() is None
    ca.issue(tmp_path, "server")
    bump(tmp_path / "server.key")
    assert tls.reload_if_changed()


def test_missing_files_are_named(tmp_path: Path) -> None:
    config = TlsServerConfig(cert_file=str(tmp_path / "nope.crt"), key_file=str(tmp_path / "nope.key"))
    with pytest.raises(ValueError, match=r"nope\.crt"):
        ServerTls(config).load()


def test_a_client_ca_means_mutual_tls(ca: Authority, tmp_path: Path) -> None:
    ca_file = ca.write_ca(tmp_path / "ca.crt")
    tls = server_tls(ca, tmp_path, client_ca_file=str(ca_file), min_version="1.3")

    assert tls.context.verify_mode == ssl.CERT_REQUIRED
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(
    ("details", "says"),
    [
        ("...CERTIFICATE_VERIFY_FAILED: certificate has expired: OK", "has expired"),
        (
            "...Custom verification check failed with error: UNAUTHENTICATED: "
            "Hostname Verification Check failed.",
            "does not name the host",
        ),
        ("...CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate", "wrong CA"),
    ],
)
def test_explain_failure_says_which_check_failed(details: str, says: str) -> None:
    explained = explain_failure(details)
    assert explained.startswith("TLS handshake failed: ") and says in explained and details in explained


def test_other_errors_are_left_as_they_are() -> None:
    assert explain_failure("connection refused") == "connection refused"
    assert explain_failure(None) == ""


def test_client_tls_rules() -> None:
    with pytest.raises(ValidationError, match=r"cert_file and tls\.key_file go together"):
        TlsConfig(cert_file="c.crt")
    with pytest.raises(ValidationError, match="insecure: true sends plaintext"):
        TlsConfig(insecure=True, ca_file="ca.crt")
    assert TlsConfig(ca_file="ca.crt", server_name_override="gw.internal", cert_file="c", key_file="k")
