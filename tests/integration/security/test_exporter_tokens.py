"""Exporters with a rotating bearer token file, against a real bridge whose `auth` extension
verifies JWTs with a JWKS file (as a cluster's service-account tokens are): two gateways, one
forwarding with the `otlp` exporter, one with `otap` (long-lived streams), read their token from
one file. Mid-stream the file is replaced atomically (as a kubelet rotates a projected token) by
a token of another key, and the first token expires while the spans keep flowing: every span
lands, no send is refused or retried, each gateway says it reloaded the token, and no log holds
a token."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import httpx
from fault.harness import MEMORY_LIMITER

from integration.receivers.conftest import Processes
from integration.security.test_jwt import namespace
from integration.security.test_tokens import bridge_with_auth, post_http, rows_of, spans
from orasi_common.testing.jwks import AUDIENCE, ISSUER, Issuer
from orasi_common.testing.service_process import ServiceProcess, free_ports
from orasi_common.topology import forwarder, service

FIRST_LIFETIME = 8.0
"""Seconds the first token is valid: past the rotation, before the stream ends."""
ROTATE_AT = 3.0
STREAM_SECONDS = 12.0


def replace(path: Path, token: str) -> None:
    """``token`` in ``path``, swapped in atomically."""
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(token + "\n")
    os.replace(staged, path)


def gateway(processes: Processes, bridge: ServiceProcess, exporter: str, token_file: Path) -> ServiceProcess:
    """A gateway receiving OTLP (no auth of its own) and forwarding with ``exporter`` to ``bridge``,
    its bearer token read from ``token_file``."""
    section = forwarder(
        bridge.grpc_endpoint,
        None,
        auth={"bearer_token_file": str(token_file), "reload_interval": 0.2},
        retry_on_failure={"initial_interval": 0.1, "max_interval": 1},
    )
    config = service(free_ports(), "otlp", MEMORY_LIMITER, exporter, section, signals=("traces",))
    return processes._add("gateway", config).start()


def test_exporters_follow_a_rotating_token_file(processes: Processes, tmp_path: Path) -> None:
    issuer = Issuer()
    issuer.add("k1", "rsa")
    issuer.add("k2", "ec")
    auth = {
        "jwt": {
            "jwks_file": str(issuer.publish(tmp_path / "jwks.json", "k1", "k2")),
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "tenant_claim": "kubernetes.io/namespace",
            "scopes_claim": "scope",
            "leeway": 0,
        },
        "cache_seconds": 0.5,
    }
    bridge = bridge_with_auth(processes, "otap", auth=auth)
    hop = namespace("orasi-gateways", "forward")  # a forwarding hop: ingests as its batches' tenant
    token_file = tmp_path / "token"  # read at the first send
    gateways = {name: gateway(processes, bridge, name, token_file) for name in ("otlp", "otap")}

    tenant, run = f"team-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    sent = dict.fromkeys(gateways, 0)
    first = issuer.token("k1", exp=int(time.time() + FIRST_LIFETIME), **hop)
    replace(token_file, first)
    started = time.monotonic()

    def stream(name: str) -> None:
        while time.monotonic() - started < STREAM_SECONDS:
            answer = post_http(gateways[name], spans(run, 5), **{"x-orasi-tenant": tenant})
            assert answer.status_code == 200, answer.text
            sent[name] += 5
            time.sleep(0.05)

    senders = [threading.Thread(target=stream, args=(name,)) for name in gateways]
    for sender in senders:
        sender.start()
    time.sleep(ROTATE_AT)
    second = issuer.token("k2", **hop)
    replace(token_file, second)
    for sender in senders:
        sender.join()
    assert time.monotonic() - started > FIRST_LIFETIME  # the first token expired mid-stream

    reader = issuer.token("k1", **namespace(tenant, "query"))
    total = sum(sent.values())
    sql = f"SELECT count(*) FROM spans WHERE attributes['run'] = '{run}' HAVING count(*) >= {total}"
    assert rows_of(bridge, sql, reader, 1) == [[total]]
    for name, process in gateways.items():
        assert process.metric("orasi_exporter_sent_items_total", exporter=name) == sent[name], name
        assert process.metric("orasi_exporter_retries_total") == 0, process.log_text()[-3000:]
        assert process.metric("orasi_exporter_send_failed_items_total") == 0, name
        assert process.logged("Bearer token reloaded."), name
        log = process.log_text()
        assert first not in log and second not in log
    assert first not in bridge.log_text() and second not in bridge.log_text()
    # The first token is refused now: the spans after its expiry travelled with the second.
    refused = httpx.post(
        bridge.http_url + "/v1/traces",
        content=spans(run, 1).SerializeToString(),
        headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {first}"},
        timeout=30,
    )
    assert refused.status_code == 401 and "expired" in refused.text
