"""OTAP's numbered vocabularies: payload (table) types, attribute value types, metric types.

Names and numbers are those of otel-arrow's ``arrow_service.proto`` (``ArrowPayloadType``) and
of its reference encoders (value and metric types).
"""

from __future__ import annotations

import enum


class ArrowPayloadType(enum.IntEnum):
    """Which table an ``ArrowPayload`` carries."""

    UNKNOWN = 0
    RESOURCE_ATTRS = 1
    SCOPE_ATTRS = 2
    # metrics
    UNIVARIATE_METRICS = 10
    NUMBER_DATA_POINTS = 11
    SUMMARY_DATA_POINTS = 12
    HISTOGRAM_DATA_POINTS = 13
    EXP_HISTOGRAM_DATA_POINTS = 14
    NUMBER_DP_ATTRS = 15
    SUMMARY_DP_ATTRS = 16
    HISTOGRAM_DP_ATTRS = 17
    EXP_HISTOGRAM_DP_ATTRS = 18
    NUMBER_DP_EXEMPLARS = 19
    HISTOGRAM_DP_EXEMPLARS = 20
    EXP_HISTOGRAM_DP_EXEMPLARS = 21
    NUMBER_DP_EXEMPLAR_ATTRS = 22
    HISTOGRAM_DP_EXEMPLAR_ATTRS = 23
    EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS = 24
    MULTIVARIATE_METRICS = 25
    METRIC_ATTRS = 26
    # logs
    LOGS = 30
    LOG_ATTRS = 31
    # traces
    SPANS = 40
    SPAN_ATTRS = 41
    SPAN_EVENTS = 42
    SPAN_LINKS = 43
    SPAN_EVENT_ATTRS = 44
    SPAN_LINK_ATTRS = 45


class AttributeValueType(enum.IntEnum):
    """The ``type`` column of attribute tables and of the log ``body`` struct."""

    EMPTY = 0
    STR = 1
    INT = 2
    DOUBLE = 3
    BOOL = 4
    MAP = 5
    SLICE = 6
    BYTES = 7


class MetricType(enum.IntEnum):
    """The ``metric_type`` column of UNIVARIATE_METRICS: which data field a Metric has set."""

    EMPTY = 0
    GAUGE = 1
    SUM = 2
    HISTOGRAM = 3
    EXPONENTIAL_HISTOGRAM = 4
    SUMMARY = 5


P = ArrowPayloadType

TRACES_PAYLOAD_TYPES: frozenset[ArrowPayloadType] = frozenset(
    {
        P.SPANS,
        P.SPAN_ATTRS,
        P.SPAN_EVENTS,
        P.SPAN_LINKS,
        P.SPAN_EVENT_ATTRS,
        P.SPAN_LINK_ATTRS,
        P.RESOURCE_ATTRS,
        P.SCOPE_ATTRS,
    }
)
LOGS_PAYLOAD_TYPES: frozenset[ArrowPayloadType] = frozenset(
    {P.LOGS, P.LOG_ATTRS, P.RESOURCE_ATTRS, P.SCOPE_ATTRS}
)
METRICS_PAYLOAD_TYPES: frozenset[ArrowPayloadType] = frozenset(
    {
        P.UNIVARIATE_METRICS,
        P.NUMBER_DATA_POINTS,
        P.SUMMARY_DATA_POINTS,
        P.HISTOGRAM_DATA_POINTS,
        P.EXP_HISTOGRAM_DATA_POINTS,
        P.NUMBER_DP_ATTRS,
        P.SUMMARY_DP_ATTRS,
        P.HISTOGRAM_DP_ATTRS,
        P.EXP_HISTOGRAM_DP_ATTRS,
        P.NUMBER_DP_EXEMPLARS,
        P.HISTOGRAM_DP_EXEMPLARS,
        P.EXP_HISTOGRAM_DP_EXEMPLARS,
        P.NUMBER_DP_EXEMPLAR_ATTRS,
        P.HISTOGRAM_DP_EXEMPLAR_ATTRS,
        P.EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS,
        P.METRIC_ATTRS,
        P.RESOURCE_ATTRS,
        P.SCOPE_ATTRS,
    }
)
"""Payload types a signal's stream may carry (MULTIVARIATE_METRICS is defined but unsupported)."""
