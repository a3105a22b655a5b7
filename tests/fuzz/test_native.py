"""The pieces of the native campaign (``tests/fuzz/native.py``) that run without its build.

The campaign itself (clang, libFuzzer, ASan) is ``scripts/fuzz-native.sh``, not part of
``make test``; these check what it relies on: the wire tree round-trips, the structure-aware
mutations keep most requests well-formed, the seeds are small real requests and ``arguments_hostile``
keeps its contract on the regular build.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orasi_common.pdata import Signal, _wirescan
from orasi_common.pdata.signal import SPECS
from orasi_common.pdata.validate import _SCHEMAS
from orasi_common.testing.shared import shared_path
from tests.fuzz.native import (
    MAX_REPEATED,
    REQUESTS_PER_FILE,
    arguments_hostile,
    corpus_requests,
    mutate_wire,
    parse,
    serialize,
)

_NAMES = {
    Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
    Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics"),
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
}
Requests = list[tuple[Signal, bytes]]
_SETTINGS = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def requests() -> Requests:
    return list(corpus_requests(shared_path("corpus")))


def test_the_wire_tree_round_trips(requests: Requests) -> None:
    for _, data in requests:
        fields = parse(data)
        assert fields is not None and serialize(fields) == data
        assert parse(data[:-1]) is None  # the last field cut short


def test_structure_aware_mutations_keep_most_requests_well_formed(requests: Requests) -> None:
    traces = [data for signal, data in requests if signal == Signal.TRACES]
    changed = well_formed = 0
    for index in range(400):
        data = traces[index % len(traces)]
        mutated = mutate_wire(data, random.Random(index))
        assert mutated is not None  # a real request is always a message it can edit
        changed += mutated != data
        try:
            _wirescan.validate(mutated, _SCHEMAS[Signal.TRACES].code)
            well_formed += 1
        except ValueError:
            pass
    assert changed >= 320, changed  # a few edits are no-ops (a field swapped with itself)
    assert well_formed >= 200, well_formed  # byte mutations alone keep few: lengths break


def test_the_seeds_are_small_real_requests_of_one_resource(requests: Requests) -> None:
    assert sorted(signal for signal, _ in requests) == sorted(list(Signal) * REQUESTS_PER_FILE)
    assert len({data for _, data in requests}) == len(requests)
    assert max(len(data) for _, data in requests) < 4096  # the campaign's -max_len
    for signal, data in requests:
        top = parse(data)
        assert top is not None and [tag for tag, _ in top] == [0x0A]  # one resource_* entry
        resources, scopes, items = _NAMES[signal]
        (resource,) = getattr(SPECS[signal].request_type.FromString(data), resources)
        assert 1 <= len(getattr(resource, scopes)) <= MAX_REPEATED
        assert all(1 <= len(getattr(scope, items)) <= MAX_REPEATED for scope in getattr(resource, scopes))


@_SETTINGS
@given(st.binary(max_size=300))
def test_arguments_hostile_keeps_its_contract(data: bytes) -> None:
    arguments_hostile(data)  # ValueError is caught inside; anything else, or a wrong result, fails


def test_arguments_hostile_fails_on_a_wrong_result() -> None:
    """Offsets inside the data get past the bounds checks, and a wrong answer is caught."""
    from unittest import mock

    two = b"".join(value.to_bytes(8, "little") for value in (0, 1, 4, 4))  # data[0:4], data[1:4]
    data = bytes([2, 3]) + two
    arguments_hostile(data)
    wrong = mock.patch.object(_wirescan, "gather", return_value=b"abc")  # 7 bytes are due
    with wrong, pytest.raises(AssertionError, match="gather"):
        arguments_hostile(data)


class _WrongDictionary:
    """Numbers its one row 5 while holding no value."""

    def __init__(self, seed: int) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def encode(self, *args: object) -> tuple[bytes, None, bytes, bytes]:
        return b"\x05\x00", None, b"\0\0\0\0", b""


def test_the_dictionary_checks_fail_on_a_wrong_result() -> None:
    """One row, an empty string: the real dictionary numbers it 0 and holds it; a wrong one is
    caught by the hostile-arguments check and by the wirescan target's."""
    from unittest import mock

    import numpy as np

    from tests.fuzz.targets import ContractBroken, _dictionary

    data = bytes([1, 1]) + bytes(16)
    rows = np.array([0, 0], dtype=np.int32)
    arguments_hostile(data)
    _dictionary(b"\x00", rows)
    with mock.patch.object(_wirescan, "Dictionary", _WrongDictionary):
        with pytest.raises(AssertionError, match="Dictionary numbered"):
            arguments_hostile(data)
        with pytest.raises(ContractBroken, match="Dictionary held 0 values"):
            _dictionary(b"\x00", rows)
