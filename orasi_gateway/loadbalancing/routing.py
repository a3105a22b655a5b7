"""Splitting a batch by destination: traces by trace id, logs and metrics by service.

A resource's service is the lake's (``orasi_common.pdata.canonical``: the canonical value of its
last ``service.name``, whatever its type, or ``unknown_service``), read by the envelope walker
from the batch's bytes or OTAP tables, so an item is routed under the name it is stored under.
Each destination's request keeps the resource and scope (with their schema URLs) of the items
it receives, in the original order. When every item goes to the same destination the batch is
not split at all (it is forwarded as it is: its bytes, or its OTAP tables, unparsed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pdata import envelope as envelopes
from orasi_common.pdata.otlp import shell
from orasi_common.pdata.protoscan import Buffer

Owner = Callable[[bytes], str | None]

UNROUTABLE = ""  # the destination of items whose owner is unknown (no usable endpoint)


def _owners(envelope: envelopes.Envelope, owner: Owner) -> list[str]:
    """The owner of each resource, by its service name."""
    return [owner(name.encode()) or UNROUTABLE for name in envelope.service_names.to_pylist()]


def route(batch: Batch, owner: Owner) -> dict[str, Message] | str:
    """Group the batch's items by owner: spans by trace id, other signals by service name.

    Returns the single owner when every item has the same one (nothing to split), else a request
    per owner. Items without a usable owner are grouped under ``UNROUTABLE``.
    """
    signal = batch.signal
    spec = SPECS[signal]
    if signal is not Signal.TRACES:
        owners = _owners(envelopes.of_batch(batch), owner)
        if len(set(owners)) <= 1:
            return owners[0] if owners else UNROUTABLE
        if batch.otap is not None:  # the decoded request's resources, by the same rule
            owners = _owners(envelopes.OtlpEnvelope(Buffer(batch.raw)), owner)
        resources = getattr(batch.message, spec.resource_field)
        routed: dict[str, Message] = {}
        for resource, name in zip(resources, owners, strict=True):
            getattr(routed.setdefault(name, spec.request_type()), spec.resource_field).append(resource)
        return routed

    resources = getattr(batch.message, spec.resource_field)
    cache: dict[bytes, str] = {}

    def span_owner(trace_id: bytes) -> str:
        found = cache.get(trace_id)
        if found is None:
            found = cache[trace_id] = owner(trace_id) or UNROUTABLE
        return found

    owners_by_scope = [
        [[span_owner(span.trace_id) for span in scope.spans] for scope in resource.scope_spans]
        for resource in resources
    ]
    distinct = {o for per_resource in owners_by_scope for per_scope in per_resource for o in per_scope}
    if len(distinct) <= 1:
        return distinct.pop() if distinct else UNROUTABLE
    routed = {}
    for resource, per_resource in zip(resources, owners_by_scope, strict=True):
        resource_shells: dict[str, Any] = {}
        for scope, per_scope in zip(resource.scope_spans, per_resource, strict=True):
            scope_shells: dict[str, Any] = {}
            for span, name in zip(scope.spans, per_scope, strict=True):
                target = scope_shells.get(name)
                if target is None:
                    out_resource = resource_shells.get(name)
                    if out_resource is None:
                        request_out = routed.setdefault(name, spec.request_type())
                        out_resource = getattr(request_out, spec.resource_field).add()
                        out_resource.CopyFrom(shell(resource, "scope_spans"))
                        resource_shells[name] = out_resource
                    target = scope_shells[name] = out_resource.scope_spans.add()
                    target.CopyFrom(shell(scope, "spans"))
                target.spans.append(span)
    return routed
