"""What the discovery tests write to etcd: registration records, as the etcd extension does."""

from __future__ import annotations

from datetime import UTC, datetime

import aetcd

from orasi_common.control.registration import Endpoints, encode, make_record


def registration(otlp_grpc: str, otap: str | None = None) -> bytes:
    """The record of an instance answering OTLP/gRPC at ``otlp_grpc`` (and OTAP at ``otap``)."""
    endpoints = Endpoints(otlp_grpc=otlp_grpc, otap=otap, admin="127.0.0.1:13133")
    return encode(make_record(endpoints, region="r", zone="", version="0.1.0", started_at=datetime.now(UTC)))


def etcd_client(url: str) -> aetcd.Client:
    """A client of the etcd at ``url`` (http://host:port) for the test to write with."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return aetcd.Client(host, int(port))
