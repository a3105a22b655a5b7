"""Every HTTP 401 and 403 carries the bearer challenge of RFC 6750 §3: ``WWW-Authenticate: Bearer
realm="orasi"`` when no token came, with ``error="invalid_token"`` when a bad one did, and with
``error="insufficient_scope"`` on a 403 — from the push receivers (OTLP/HTTP, Zipkin, Prometheus
remote write) and from the query API (its query, Jaeger and registry routes), whether it checks
the `auth` extension's tokens or static API keys. Real servers answer real HTTP requests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from integration.flightsql.conftest import StartApi
from orasi_bridge.lake import LakeWriter
from orasi_common.extensions.auth import Config as AuthConfig
from orasi_common.extensions.auth.store import TokenStore
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.receivers import otlp, prometheus_remote_write, zipkin
from orasi_common.telemetry.metrics import Metrics

NONE = 'Bearer realm="orasi"'
INVALID = 'Bearer realm="orasi", error="invalid_token"'
SCOPE = 'Bearer realm="orasi", error="insufficient_scope"'
FORGED = "orasi_0123456789abcdef_forged"


class Sink:
    async def consume(self, batch: Batch) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A token store and its tokens by scope: ``ingest`` and ``query`` (tenant acme)."""
    uri = f"sqlite:///{tmp_path / 'tokens.db'}"
    tokens = TokenStore(uri)
    tokens.migrate()
    made = {scope: tokens.create("acme", (scope,))[0] for scope in ("ingest", "query")}
    tokens.close()
    return uri, made


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token is not None else {}


def assert_challenges(answers: dict[str, httpx.Response], expected: dict[str, tuple[int, str]]) -> None:
    for case, (code, challenge) in expected.items():
        answer = answers[case]
        assert (answer.status_code, answer.headers.get("www-authenticate")) == (code, challenge), (
            case,
            answer.text,
        )


@pytest.fixture
async def receivers(store: tuple[str, dict[str, str]]) -> AsyncIterator[dict[str, str]]:
    """OTLP/HTTP, Zipkin and Prometheus remote-write receivers checking tokens: name → URL."""
    extensions = {"auth": AuthConfig(store=store[0], cache_seconds=0)}
    auth = {"auth": {"authenticator": "auth"}}

    def settings(component: str) -> Settings:
        logger = logging.getLogger("orasi.test")
        return Settings(
            component, Kind.RECEIVER, "gateway", Metrics("gateway"), logger, extensions=extensions
        )

    otlp_receiver = otlp.FACTORY.create(
        settings("otlp"),
        otlp.Config.model_validate({"protocols": {"http": {"endpoint": "127.0.0.1:0"}}, **auth}),
        {Signal.TRACES: Sink()},
    )
    pushed = {
        name: factory.create(
            settings(name), factory.config_type.model_validate({"endpoint": "127.0.0.1:0", **auth}), consumers
        )
        for name, factory, consumers in (
            ("zipkin", zipkin.FACTORY, {Signal.TRACES: Sink()}),
            ("prometheus_remote_write", prometheus_remote_write.FACTORY, {Signal.METRICS: Sink()}),
        )
    }
    assert isinstance(otlp_receiver, otlp.OtlpReceiver)
    started = [otlp_receiver, *pushed.values()]
    for receiver in started:
        await receiver.start()
    try:
        yield {
            "otlp": f"http://127.0.0.1:{otlp_receiver.http_port}/v1/traces",
            "zipkin": f"http://127.0.0.1:{pushed['zipkin'].port}/api/v2/spans",  # type: ignore[attr-defined]
            "prometheus_remote_write": (
                f"http://127.0.0.1:{pushed['prometheus_remote_write'].port}/api/v1/write"  # type: ignore[attr-defined]
            ),
        }
    finally:
        for receiver in reversed(started):
            await receiver.shutdown()


async def test_receivers_answer_401_and_403_with_the_bearer_challenge(
    receivers: dict[str, str], store: tuple[str, dict[str, str]]
) -> None:
    tokens = store[1]
    async with httpx.AsyncClient(timeout=30) as client:
        for name, url in receivers.items():
            protobuf = {"content-type": "application/x-protobuf"}
            answers = {
                case: await client.post(url, content=b"\x00", headers={**protobuf, **bearer(token)})
                for case, token in (("none", None), ("forged", FORGED), ("reader", tokens["query"]))
            }
            answers["not bearer"] = await client.post(
                url, content=b"\x00", headers={**protobuf, "authorization": "Basic eA=="}
            )
            assert_challenges(
                answers,
                {
                    "none": (401, NONE),
                    "not bearer": (401, NONE),
                    "forged": (401, INVALID),
                    "reader": (403, SCOPE),
                },
            )
            # A valid ingest token passes the check (the body is then the data's business).
            passed = await client.post(url, content=b"\x00", headers={**protobuf, **bearer(tokens["ingest"])})
            assert passed.status_code not in (401, 403), (name, passed.text)
            assert "www-authenticate" not in passed.headers, name


QUERY_ROUTES = (("POST", "/api/v1/query"), ("GET", "/api/services"), ("GET", "/registry/subjects"))


async def answers_of(port: int, cases: dict[str, dict[str, str]]) -> dict[str, httpx.Response]:
    """Each route's answer to each case's headers: ``"<case> <path>"`` → response."""
    found = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for method, path in QUERY_ROUTES:
            for case, headers in cases.items():
                found[f"{case} {path}"] = await client.request(
                    method,
                    f"http://127.0.0.1:{port}{path}",
                    json={"sql": "SELECT 1"} if method == "POST" else None,
                    headers=headers,
                )
    return found


async def test_the_query_api_answers_401_and_403_with_the_bearer_challenge(
    start_api: StartApi, writer: LakeWriter, store: tuple[str, dict[str, str]]
) -> None:
    uri, tokens = store
    # Tokens of the `auth` extension (TokenGate); an ingest-only token may not read.
    gated = await start_api(
        writer, extensions={"auth": AuthConfig(store=uri, cache_seconds=0)}, auth={"authenticator": "auth"}
    )
    cases = {"none": {}, "forged": bearer(FORGED), "writer": bearer(tokens["ingest"])}
    expected = {"none": (401, NONE), "forged": (401, INVALID), "writer": (403, SCOPE)}
    answers = await answers_of(gated.port or 0, cases)
    assert_challenges(answers, {f"{c} {p}": e for c, e in expected.items() for _, p in QUERY_ROUTES})
    assert (await answers_of(gated.port or 0, {"ok": bearer(tokens["query"])}))[
        "ok /api/v1/query"
    ].status_code == 200

    # Static API keys: no key, an unknown one, a key asking for another tenant.
    keyed = await start_api(writer, api_keys={"key-of-acme": "acme"})
    cases = {
        "none": {},
        "unknown": {"x-api-key": "not-a-key"},
        "other tenant": {**bearer("key-of-acme"), "x-orasi-tenant": "globex"},
    }
    expected = {"none": (401, NONE), "unknown": (401, INVALID), "other tenant": (403, SCOPE)}
    answers = await answers_of(keyed.port or 0, cases)
    assert_challenges(answers, {f"{c} {p}": e for c, e in expected.items() for _, p in QUERY_ROUTES})
