"""Coverage-guided fuzzing of the native scanner's C code: run by ``scripts/fuzz-native.sh``.

``python -m tests.fuzz wirescan`` instruments Python only; here libFuzzer (through atheris) is
guided by the edges and comparisons of ``_wirescan.c`` itself. The script builds the extension
with clang ``-fsanitize=address,fuzzer-no-link`` and runs this module under ``LD_PRELOAD`` of
atheris's ``asan_with_fuzzer.so`` (AddressSanitizer and libFuzzer in one runtime, which the
build's coverage counters and checks link against), with ``PYTHONMALLOC=malloc`` so that every
Python buffer the scanner reads or writes is an ASan-guarded allocation.

Each input runs ``targets.wirescan`` (``scan`` of the message and every LEN field below it,
``gather``, ``validate`` for each signal's schema, ``key_values``, ``codes``, ``group``,
``Dictionary``, ``text_lines`` and ``cri_heads`` of the input as a log block) and
:func:`arguments_hostile` (every entry point, ``join`` too, with offsets, row counts and flags
taken from the input). The contract: nothing
but the documented ``ValueError`` and ``MalformedData``; libFuzzer's ``-timeout`` and
``-malloc_limit_mb`` hold the time and allocation bounds of ``targets`` (``MAX_SECONDS``, and
``MAX_GROWTH_MB`` for any one allocation), ASan the memory safety.

Inputs are structure-aware: the seed corpus (``seeds``) is real OTLP requests
(``shared/corpus/`` when it is there, cut to a few items each) and the hypothesis-drawn
requests of ``inputs.VALID``; half of the mutations (:func:`custom_mutate`, which libFuzzer
calls through ``native_mutator.c``) are :func:`mutate_wire`'s, which edit the protobuf tree
(drop, duplicate, swap or retag a field, an extreme varint, nest a message in itself, splice)
and write every length prefix again, so that a mutated request stays well-formed and reaches
the schema walk; the other half are libFuzzer's byte mutations.

    python -m tests.fuzz.native seeds DIR            # write the seed corpus
    python -m tests.fuzz.native fuzz BUILD -- ARGS   # BUILD: the instrumented .so; ARGS: libFuzzer's
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orasi_common.receivers.wire import varint  # imports nothing of pdata

if TYPE_CHECKING:
    from orasi_common.pdata.signal import Signal

# nothing of orasi_common.pdata is imported at module level: the instrumented build is loaded first

REQUESTS_PER_FILE = 40
"""How many requests of each corpus file become seeds."""

MAX_REPEATED = 3
"""Every repeated message field of a seed is cut to this many elements (small, fast inputs)."""

_EXTREME = [0, 1, 127, 128, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


# --- the wire format as a tree -----------------------------------------------------------------


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data) and shift < 70:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7
    raise ValueError("truncated varint")


Field = tuple[int, bytes]  # (tag, the bytes after the tag: a varint, fixed bytes, or a LEN payload)


def parse(data: bytes) -> list[Field] | None:
    """The top-level fields of ``data`` (LEN payloads without their prefix), None if malformed."""
    fields, at = [], 0
    try:
        while at < len(data):
            tag, at = _read_varint(data, at)
            wire, start = tag & 7, at
            if wire == 0:
                _, at = _read_varint(data, at)
            elif wire in (1, 5):
                at += 8 if wire == 1 else 4
            elif wire == 2:
                length, start = _read_varint(data, at)
                at = start + length
            else:
                return None
            if at > len(data):
                return None
            fields.append((tag, data[start:at]))
    except ValueError:
        return None
    return fields


def serialize(fields: list[Field]) -> bytes:
    return b"".join(
        varint(tag) + (varint(len(body)) + body if tag & 7 == 2 else body) for tag, body in fields
    )


def _submessages(fields: list[Field]) -> list[int]:
    return [i for i, (tag, body) in enumerate(fields) if tag & 7 == 2 and body and parse(body)]


def mutate_wire(data: bytes, rng: random.Random, depth: int = 0) -> bytes | None:
    """One structure-aware edit somewhere in the message tree (lengths written again), or None
    when ``data`` is not a message this can edit."""
    fields = parse(data)
    if not fields:
        return None
    inner = _submessages(fields)
    if inner and depth < 30 and rng.random() < 0.7:
        i = rng.choice(inner)
        changed = mutate_wire(fields[i][1], rng, depth + 1)
        if changed is not None:
            fields[i] = (fields[i][0], changed)
            return serialize(fields)
    i, j = rng.randrange(len(fields)), rng.randrange(len(fields))
    tag, body = fields[i]
    how = rng.randrange(8)
    if how == 0:
        del fields[i]
    elif how == 1:
        fields.insert(j, fields[i])
    elif how == 2:
        fields[i], fields[j] = fields[j], fields[i]
    elif how == 3:  # another wire type: a body of its size, or for 3, 4, 6 and 7 a bare tag
        wire = rng.randrange(8)
        if wire in (3, 4, 6, 7):
            return serialize(fields[:i]) + varint(tag & ~7 | wire) + serialize(fields[i + 1 :])
        sized = {0: varint(rng.choice(_EXTREME)), 1: body[:8].ljust(8, b"\0"), 5: body[:4].ljust(4, b"\0")}
        fields[i] = (tag & ~7 | wire, sized.get(wire, body))
    elif how == 4:
        fields[i] = (tag & ~7, varint(rng.choice(_EXTREME)))
    elif how == 5:  # the message nested in one of its own fields, a few levels deep
        nested = data
        for _ in range(rng.randrange(1, 40)):
            nested = serialize([(tag & ~7 | 2, nested)])
        return nested
    elif how == 6:  # another field's payload, or another field number
        fields[i] = (
            rng.choice([tag, (rng.randrange(1, 20) << 3) | (tag & 7)]),
            fields[j][1] if tag & 7 == 2 else body,
        )
    else:  # a length prefix that lies (the one edit that breaks the structure on purpose)
        head = serialize(fields[:i])
        claim = len(body) + rng.choice([-1, 1, 2, 2**31 - 1, 2**32 + len(body)])
        return head + varint(tag) + varint(max(claim, 0)) + body + serialize(fields[i + 1 :])
    return serialize(fields)


# --- seeds -----------------------------------------------------------------------------------


def _cut(message) -> None:  # type: ignore[no-untyped-def]
    """Every repeated message field of ``message``, recursively, cut to MAX_REPEATED elements."""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.is_repeated and not descriptor.message_type.GetOptions().map_entry:
            del value[MAX_REPEATED:]
            for element in value:
                _cut(element)
        elif not descriptor.is_repeated:
            _cut(value)


def corpus_requests(directory: Path) -> Iterator[tuple[Signal, bytes]]:
    """Requests of one resource each from every corpus file (REQUESTS_PER_FILE of them, from
    resources spread over the file), each cut small (see ``_cut``), with their signal."""
    from orasi_common.bench.corpus import read_requests
    from orasi_common.pdata.signal import SPECS, Signal

    kinds = {"oteltraces": Signal.TRACES, "otelmetrics": Signal.METRICS, "otellogs": Signal.LOGS}
    for path in sorted(directory.glob("*.zst")):
        signal = next(s for key, s in kinds.items() if key in path.name)
        (field,) = SPECS[signal].request_type.DESCRIPTOR.fields  # resource_spans, _metrics or _logs
        resources = [r for request in read_requests(path, signal) for r in getattr(request, field.name)]
        for resource in resources[:: max(1, len(resources) // REQUESTS_PER_FILE)][:REQUESTS_PER_FILE]:
            request = SPECS[signal].request_type()
            getattr(request, field.name).add().CopyFrom(resource)
            _cut(request)
            yield signal, request.SerializeToString()


def seeds(into: Path) -> int:
    """Writes the seed corpus into ``into``: corpus requests (if the corpus is there) and
    hypothesis-drawn valid requests. Returns how many."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from orasi_common.testing.shared import shared_dir
    from tests.fuzz.inputs import VALID

    corpus = shared_dir() / "corpus"
    found = {data for _, data in corpus_requests(corpus)} if corpus.is_dir() else set()

    @settings(deadline=None, database=None, max_examples=100, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        found.add(data.draw(VALID["wirescan"]()))

    draw()
    into.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(sorted(found)):
        (into / f"seed-{index:04d}").write_bytes(seed)
    return len(found)


# --- the campaign --------------------------------------------------------------------------------


def custom_mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's mutation (``LLVMFuzzerCustomMutator``, through ``native_mutator.c``): half of
    the time :func:`mutate_wire`'s when it applies, else libFuzzer's own byte mutations."""
    import atheris

    rng = random.Random(seed)
    if rng.random() < 0.5:
        changed = mutate_wire(data, rng)
        if changed is not None and len(changed) <= max_size:
            return changed
    return bytes(atheris.Mutate(data, max_size))


def arguments_hostile(data: bytes) -> None:
    """The entry points with their other arguments cut from the input too: ``scan``, ``gather``
    and ``cri_heads`` with int64 starts and ends, ``group`` with them, int64 parents and a group
    count, ``codes`` with int32 offsets, validity flags and a seed, ``Dictionary.encode`` with
    int32 offsets, a bitmap, rows, a limit and an index width, ``text_lines`` with a cut and
    a limit, ``key_values`` with int32 offsets, ``join`` with a row count, emit flags, values and
    offsets (orasi computes these from a scan, never takes them from the wire; their bounds checks
    are fuzzed all the same). Each call must refuse what lies outside its buffers (ValueError) or
    return exactly what it says."""
    import numpy as np

    from orasi_common.pdata import _wirescan

    if len(data) < 2:
        return
    n, width, body = data[0] % 16, data[1] % 10, data[2:]
    words = body[: 16 * n].ljust(16 * n, b"\0")  # n starts, then n ends
    starts, ends = words[: 8 * n], words[8 * n :]
    with contextlib.suppress(ValueError):
        _wirescan.scan(data, starts, ends)
    with contextlib.suppress(ValueError):
        slices = zip(struct.unpack(f"<{n}q", starts), struct.unpack(f"<{n}q", ends), strict=True)
        if len(_wirescan.gather(data, starts, ends)) != sum(e - s for s, e in slices):
            raise AssertionError("gather returned other than the slices' bytes")
    with contextlib.suppress(ValueError):
        slices = zip(struct.unpack(f"<{n}q", starts), struct.unpack(f"<{n}q", ends), strict=True)
        parents = body[16 * n : 24 * n].ljust(8 * n, b"\0")
        offsets, grouped = _wirescan.group(data, starts, ends, parents, data[1] % 8)
        rows = struct.unpack(f"<{data[1] % 8 + 1}q", offsets)
        total = sum(e - s for s, e in slices)
        if rows[0] != 0 or rows[-1] != len(grouped) or len(grouped) != total or list(rows) != sorted(rows):
            raise AssertionError(f"group returned offsets {rows} for {len(grouped)} bytes")
    with contextlib.suppress(ValueError):
        offsets = body[: 4 * (n + 1)].ljust(4 * (n + 1), b"\0")
        codes, firsts = _wirescan.codes(
            data, offsets, body[:n].ljust(n, b"\1"), int.from_bytes(data[:8], "little")
        )
        numbered = struct.unpack(f"<{n}q", codes)
        if max(numbered, default=-1) + 1 != len(firsts) // 8 or min(numbered, default=-1) < -1:
            raise AssertionError(f"codes returned codes {numbered} and {len(firsts) // 8} first rows")
    with contextlib.suppress(ValueError):
        _dictionary_hostile(data, n, body)
    with contextlib.suppress(ValueError):
        if len(_wirescan.key_values(data, body[: 4 * (n + 1)].ljust(4 * (n + 1), b"\0"))) != 7 * 8 * n:
            raise AssertionError("key_values returned other than 7 columns of n rows")
    with contextlib.suppress(ValueError):
        if len(_wirescan.cri_heads(data, starts, ends)) != 26 * n:
            raise AssertionError("cri_heads returned other than 3 int64 and 2 byte columns of n rows")
    cut, limit = struct.unpack("<QQ", words[:16].ljust(16, b"\0"))
    cut, limit = cut % (len(data) + 2) - 1, limit % 512 - 1  # -1 refused, then every cut and limit
    with contextlib.suppress(ValueError):
        too_long, lines = _wirescan.text_lines(data, cut, limit)
        if len(lines) % 24 or not 0 <= too_long <= len(lines) // 24:
            raise AssertionError(f"text_lines returned {len(lines)} bytes of columns, {too_long} cut")
        first, last, past = np.frombuffer(lines, dtype=np.int64).reshape(3, -1)
        if not ((first >= 0) & (first <= last) & (last < past) & (past <= cut + 1)).all():
            raise AssertionError("text_lines returned a line outside the cut")
    values = body[n : n + 8 * (n + 1)]
    parts = [(kind, b"\x0a", body[kind : kind + n], values, body, width) for kind in range(4)]
    for part in [*parts, (data[0] % 5, b"", b"\x01" * n, body, body, width)]:
        try:
            offsets, out = _wirescan.join(n, [part])
        except ValueError:
            continue
        rows = struct.unpack(f"<{n + 1}q", offsets)
        if rows[0] != 0 or rows[-1] != len(out) or list(rows) != sorted(rows):
            raise AssertionError(f"join returned offsets {rows} for {len(out)} bytes")


def _dictionary_hostile(data: bytes, n: int, body: bytes) -> None:
    """``Dictionary.encode`` with int32 offsets, a validity bitmap (or None), a first row, a row
    count, a limit and an index width cut from the input, twice on one dictionary: what it
    returns must hold together (indices below the values held, the new values' offsets inside
    their data)."""
    from orasi_common.pdata import _wirescan

    offsets = body[: 4 * (n + 1)].ljust(4 * (n + 1), b"\0")
    validity = None if data[1] & 1 else body[n : n + 2]
    first, width = data[1] % 3 - 1, 1 + data[0] % 2  # -1 refused
    dictionary = _wirescan.Dictionary(int.from_bytes(data[:8], "little"))
    for limit in (data[1] % 7, 256 if width == 1 else 300):
        found = dictionary.encode(validity, offsets, data, first, n - first, limit, width)
        if found is None:
            continue
        indices, bitmap, new_offsets, new_data = found
        numbers = struct.unpack(f"<{n - first}{'B' if width == 1 else 'H'}", indices)
        rows = struct.unpack(f"<{len(new_offsets) // 4}i", new_offsets)
        if max(numbers, default=0) >= max(len(dictionary), 1) or len(dictionary) > limit:
            raise AssertionError(
                f"Dictionary numbered rows {numbers} with {len(dictionary)} values, limit {limit}"
            )
        if rows[0] != 0 or rows[-1] != len(new_data) or list(rows) != sorted(rows):
            raise AssertionError(f"Dictionary returned new values' offsets {rows} for {len(new_data)} bytes")
        if (bitmap is None) != (validity is None) or (
            bitmap is not None and len(bitmap) != (n - first + 7) // 8
        ):
            raise AssertionError("Dictionary returned a bitmap other than one bit per row")


def load(build: str):  # type: ignore[no-untyped-def]
    """Loads the instrumented build as ``orasi_common.pdata._wirescan``, before orasi imports it."""
    spec = importlib.util.spec_from_file_location("orasi_common.pdata._wirescan", build)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["orasi_common.pdata._wirescan"] = module
    from orasi_common.pdata import protoscan, validate

    assert protoscan._wirescan is module and validate._wirescan is module, (
        "the instrumented build is not in use"
    )
    return module


def fuzz(build: str, libfuzzer_args: list[str]) -> None:
    import atheris

    load(build)
    from tests.fuzz.targets import MAX_GROWTH_MB, MAX_SECONDS, wirescan

    def one(data: bytes) -> None:
        wirescan(data)
        arguments_hostile(data)

    # once over the corpus directories before libFuzzer counts allocations: what the libraries
    # behind the target allocate once and keep (pydantic's, numpy's) is not a leak of one input
    for directory in [Path(arg) for arg in libfuzzer_args if not arg.startswith("-")]:
        for path in sorted(directory.iterdir()) if directory.is_dir() else [directory]:
            one(path.read_bytes())

    bounds = [f"-timeout={int(MAX_SECONDS)}", f"-malloc_limit_mb={MAX_GROWTH_MB}"]
    atheris.Setup([sys.argv[0], *bounds, *libfuzzer_args], one)
    atheris.Fuzz()


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "seeds":
        print(f"fuzz-native: {seeds(Path(argv[1]))} seed inputs in {argv[1]}")
        return 0
    if len(argv) >= 2 and argv[0] == "fuzz":
        rest = argv[2:]
        fuzz(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    print(__doc__.splitlines()[-2] + "\n" + __doc__.splitlines()[-1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
