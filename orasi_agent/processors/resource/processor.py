"""The `resource` processor: enriches every resource with where the data came through.

Detected from the environment (Kubernetes downward API variables, AWS region) at start:

==================  ==========================================================
attribute           source
==================  ==========================================================
k8s.node.name       K8S_NODE_NAME, else NODE_NAME
host.name           the same node name (a DaemonSet agent shares the node)
k8s.pod.name        K8S_POD_NAME            (kubernetes_mode: pod only)
k8s.pod.uid         K8S_POD_UID             (kubernetes_mode: pod only)
k8s.namespace.name  K8S_NAMESPACE_NAME, else K8S_POD_NAMESPACE (pod only)
cloud.region        ORASI_REGION, else AWS_REGION, else AWS_DEFAULT_REGION
orasi.agent.id      ORASI_AGENT_ID, else the agent's host name
==================  ==========================================================

Attributes the sender already set are kept unless ``override`` is on.

The serialized request is edited where it lies (``wire.ResourceEditor``: only the resource
messages are rewritten, the items' bytes are copied), so a batch that arrived as bytes is never
parsed or serialised again here; the parsed message is edited instead only when the bytes hold
what the wire edit does not handle (protobuf groups in unknown fields).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.common.v1 import common_pb2

from orasi_agent.processors.resource.config import Config
from orasi_agent.processors.resource.wire import ResourceEditor, WireEditError
from orasi_common.pdata import SPECS, Batch
from orasi_common.pipeline.component import Consumer, Settings


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    return next((environ[n] for n in names if environ.get(n)), None)


def detect_attributes(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    node = _first(environ, "K8S_NODE_NAME", "NODE_NAME")
    found = {
        "k8s.node.name": node,
        "host.name": node,
        "cloud.region": _first(environ, "ORASI_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        "orasi.agent.id": _first(environ, "ORASI_AGENT_ID") or socket.gethostname(),
    }
    if config.kubernetes_mode == "pod":
        found |= {
            "k8s.pod.name": _first(environ, "K8S_POD_NAME"),
            "k8s.pod.uid": _first(environ, "K8S_POD_UID"),
            "k8s.namespace.name": _first(environ, "K8S_NAMESPACE_NAME", "K8S_POD_NAMESPACE"),
        }
    return {key: value for key, value in found.items() if value}


def _any_value(value: str | bool | int | float) -> common_pb2.AnyValue:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    return common_pb2.AnyValue(string_value=value)


class ResourceProcessor:
    def __init__(self, settings: Settings, config: Config, next_consumer: Consumer) -> None:
        self._config = config
        self._next = next_consumer
        self._attributes: dict[str, common_pb2.AnyValue] = {}
        self._editor = ResourceEditor((), override=config.override)

    async def start(self) -> None:
        values: dict[str, str | bool | int | float] = {}
        if self._config.detect:
            values |= detect_attributes(self._config, os.environ)
        values |= self._config.attributes
        self._attributes = {key: _any_value(value) for key, value in values.items()}
        entries = [
            (key, common_pb2.KeyValue(key=key, value=value).SerializeToString())
            for key, value in self._attributes.items()
        ]
        self._editor = ResourceEditor(entries, override=self._config.override)

    async def consume(self, batch: Batch) -> None:
        if self._attributes:
            self.enrich(batch)
        await self._next.consume(batch)

    def enrich(self, batch: Batch) -> None:
        """Add the attributes to every resource of ``batch``, in place."""
        try:
            batch.replace_serialized(self._editor.edit(batch.raw))
        except WireEditError:
            self._enrich_message(batch)

    def _enrich_message(self, batch: Batch) -> None:
        request = batch.mutable_message()
        for resource_x in getattr(request, SPECS[batch.signal].resource_field):
            self._enrich(resource_x.resource.attributes)

    def _enrich(self, attributes: Any) -> None:
        index = {kv.key: kv for kv in attributes}
        for key, value in self._attributes.items():
            existing = index.get(key)
            if existing is None:
                attributes.add(key=key).value.CopyFrom(value)
            elif self._config.override:
                existing.value.CopyFrom(value)

    async def shutdown(self) -> None:
        return None
