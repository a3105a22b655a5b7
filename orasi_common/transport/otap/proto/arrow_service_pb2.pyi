from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ArrowPayloadType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[ArrowPayloadType]
    RESOURCE_ATTRS: _ClassVar[ArrowPayloadType]
    SCOPE_ATTRS: _ClassVar[ArrowPayloadType]
    UNIVARIATE_METRICS: _ClassVar[ArrowPayloadType]
    NUMBER_DATA_POINTS: _ClassVar[ArrowPayloadType]
    SUMMARY_DATA_POINTS: _ClassVar[ArrowPayloadType]
    HISTOGRAM_DATA_POINTS: _ClassVar[ArrowPayloadType]
    EXP_HISTOGRAM_DATA_POINTS: _ClassVar[ArrowPayloadType]
    NUMBER_DP_ATTRS: _ClassVar[ArrowPayloadType]
    SUMMARY_DP_ATTRS: _ClassVar[ArrowPayloadType]
    HISTOGRAM_DP_ATTRS: _ClassVar[ArrowPayloadType]
    EXP_HISTOGRAM_DP_ATTRS: _ClassVar[ArrowPayloadType]
    NUMBER_DP_EXEMPLARS: _ClassVar[ArrowPayloadType]
    HISTOGRAM_DP_EXEMPLARS: _ClassVar[ArrowPayloadType]
    EXP_HISTOGRAM_DP_EXEMPLARS: _ClassVar[ArrowPayloadType]
    NUMBER_DP_EXEMPLAR_ATTRS: _ClassVar[ArrowPayloadType]
    HISTOGRAM_DP_EXEMPLAR_ATTRS: _ClassVar[ArrowPayloadType]
    EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS: _ClassVar[ArrowPayloadType]
    MULTIVARIATE_METRICS: _ClassVar[ArrowPayloadType]
    METRIC_ATTRS: _ClassVar[ArrowPayloadType]
    LOGS: _ClassVar[ArrowPayloadType]
    LOG_ATTRS: _ClassVar[ArrowPayloadType]
    SPANS: _ClassVar[ArrowPayloadType]
    SPAN_ATTRS: _ClassVar[ArrowPayloadType]
    SPAN_EVENTS: _ClassVar[ArrowPayloadType]
    SPAN_LINKS: _ClassVar[ArrowPayloadType]
    SPAN_EVENT_ATTRS: _ClassVar[ArrowPayloadType]
    SPAN_LINK_ATTRS: _ClassVar[ArrowPayloadType]

class StatusCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[StatusCode]
    CANCELED: _ClassVar[StatusCode]
    INVALID_ARGUMENT: _ClassVar[StatusCode]
    DEADLINE_EXCEEDED: _ClassVar[StatusCode]
    PERMISSION_DENIED: _ClassVar[StatusCode]
    RESOURCE_EXHAUSTED: _ClassVar[StatusCode]
    ABORTED: _ClassVar[StatusCode]
    INTERNAL: _ClassVar[StatusCode]
    UNAVAILABLE: _ClassVar[StatusCode]
    UNAUTHENTICATED: _ClassVar[StatusCode]
UNKNOWN: ArrowPayloadType
RESOURCE_ATTRS: ArrowPayloadType
SCOPE_ATTRS: ArrowPayloadType
UNIVARIATE_METRICS: ArrowPayloadType
NUMBER_DATA_POINTS: ArrowPayloadType
SUMMARY_DATA_POINTS: ArrowPayloadType
HISTOGRAM_DATA_POINTS: ArrowPayloadType
EXP_HISTOGRAM_DATA_POINTS: ArrowPayloadType
NUMBER_DP_ATTRS: ArrowPayloadType
SUMMARY_DP_ATTRS: ArrowPayloadType
HISTOGRAM_DP_ATTRS: ArrowPayloadType
EXP_HISTOGRAM_DP_ATTRS: ArrowPayloadType
NUMBER_DP_EXEMPLARS: ArrowPayloadType
HISTOGRAM_DP_EXEMPLARS: ArrowPayloadType
EXP_HISTOGRAM_DP_EXEMPLARS: ArrowPayloadType
NUMBER_DP_EXEMPLAR_ATTRS: ArrowPayloadType
HISTOGRAM_DP_EXEMPLAR_ATTRS: ArrowPayloadType
EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS: ArrowPayloadType
MULTIVARIATE_METRICS: ArrowPayloadType
METRIC_ATTRS: ArrowPayloadType
LOGS: ArrowPayloadType
LOG_ATTRS: ArrowPayloadType
SPANS: ArrowPayloadType
SPAN_ATTRS: ArrowPayloadType
SPAN_EVENTS: ArrowPayloadType
SPAN_LINKS: ArrowPayloadType
SPAN_EVENT_ATTRS: ArrowPayloadType
SPAN_LINK_ATTRS: ArrowPayloadType
OK: StatusCode
CANCELED: StatusCode
INVALID_ARGUMENT: StatusCode
DEADLINE_EXCEEDED: StatusCode
PERMISSION_DENIED: StatusCode
RESOURCE_EXHAUSTED: StatusCode
ABORTED: StatusCode
INTERNAL: StatusCode
UNAVAILABLE: StatusCode
UNAUTHENTICATED: StatusCode

class BatchArrowRecords(_message.Message):
    __slots__ = ("batch_id", "arrow_payloads", "headers")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ARROW_PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    arrow_payloads: _containers.RepeatedCompositeFieldContainer[ArrowPayload]
    headers: bytes
    def __init__(self, batch_id: _Optional[int] = ..., arrow_payloads: _Optional[_Iterable[_Union[ArrowPayload, _Mapping]]] = ..., headers: _Optional[bytes] = ...) -> None: ...

class ArrowPayload(_message.Message):
    __slots__ = ("schema_id", "type", "record")
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    schema_id: str
    type: ArrowPayloadType
    record: bytes
    def __init__(self, schema_id: _Optional[str] = ..., type: _Optional[_Union[ArrowPayloadType, str]] = ..., record: _Optional[bytes] = ...) -> None: ...

class BatchStatus(_message.Message):
    __slots__ = ("batch_id", "status_code", "status_message")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    status_code: StatusCode
    status_message: str
    def __init__(self, batch_id: _Optional[int] = ..., status_code: _Optional[_Union[StatusCode, str]] = ..., status_message: _Optional[str] = ...) -> None: ...
