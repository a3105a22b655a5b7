"""The bounded fuzzing campaign CI runs: every target under its structure-aware inputs.

Each target runs ``EXAMPLES[name]`` hypothesis examples (465 inputs, about 8 s of CPU): enough
to drive every target through valid, mutated and length-corrupted inputs on each run, not a
search. The search is the long campaign, ``python -m tests.fuzz TARGET --seconds N`` (README,
Security); ``make test`` also runs ``wirescan`` for 10 s under AddressSanitizer
(scripts/fuzz-asan.sh, about 1,000 inputs), hence its smaller share here. The explicit cases pin
the hostile inputs found so far, each a regression test of its fix.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.inputs import STRATEGIES
from tests.fuzz.targets import TARGETS, check, peak_rss_mb

EXAMPLES = {"otlp_protobuf": 150, "otlp_json": 100, "otap": 40, "wirescan": 100, "config": 75}
_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_keeps_its_contract(name: str) -> None:
    target, baseline = TARGETS[name], peak_rss_mb()

    @settings(_SETTINGS, max_examples=EXAMPLES[name])
    @given(STRATEGIES[name]())
    def run(data: bytes) -> None:
        check(target, data, baseline)

    run()


def test_the_long_campaign_offers_every_target() -> None:
    from tests.fuzz.__main__ import _NAMES

    assert sorted(TARGETS) == _NAMES


def test_an_otap_field_name_that_is_not_utf8_is_malformed() -> None:
    """Found by atheris: a schema whose field name is not UTF-8 raised UnicodeDecodeError when
    the receiver read its columns (a 'fault of ours' answer, not INVALID_ARGUMENT)."""
    import pyarrow as pa

    from orasi_common.errors import MalformedData
    from orasi_common.pdata.otap.payload_types import ArrowPayloadType
    from orasi_common.transport.otap.stream import StreamConsumer, StreamProducer

    table = pa.record_batch({"zq": pa.array([1], pa.uint16())})
    payload = StreamProducer(compression=None).encode({ArrowPayloadType.SPANS: table})[0]
    assert payload.record.count(b"zq") == 1
    payload.record = payload.record.replace(b"zq", b"\xd3\x28")
    with pytest.raises(MalformedData, match="not a valid Arrow IPC stream"):
        StreamConsumer().decode([payload])
    with pytest.raises(MalformedData):
        TARGETS["otap"].run(_records(payload))


def _records(payload: object) -> bytes:
    from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2

    return otap_pb2.BatchArrowRecords(batch_id=1, arrow_payloads=[payload]).SerializeToString()
