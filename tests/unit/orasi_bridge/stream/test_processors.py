"""Each stream processor on small record batches, outputs written by hand."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from orasi_bridge.stream import redact
from orasi_bridge.stream.chain import filter_rows, keep_counts
from orasi_bridge.stream.redact import luhn
from orasi_bridge.stream.sample import threshold
from orasi_bridge.stream.transform import EQUALS, key_in
from orasi_common.telemetry.metrics import Metrics

from .rows import chain, column, logs, sample_value, spans

LAKE = {"exporter": "lake"}


def test_filter_drops_matching_rows_and_recounts_each_batch() -> None:
    metrics = Metrics("bridge")
    rows = spans(
        {"name": "GET /healthz"},
        {"name": "GET /cart", "attributes": [("http.route", "/cart")]},
        {"name": "GET /ready", "attributes": [("http.route", "/ready")]},
        {"name": None},
    )
    stream = chain(
        {
            "type": "filter",
            "signals": ["traces"],
            "drop_where": "name = 'GET /healthz' OR attributes['http.route'] = '/ready'",
        },
        metrics=metrics,
    )
    kept, counts = stream.process("spans", "acme", rows, [1, 2, 1])
    assert column(kept, "name") == ["GET /cart", None]
    assert counts == [0, 1, 1]
    labels = {"exporter": "lake", "processor": "filter_0", "table": "spans"}
    assert sample_value(metrics, "orasi_stream_dropped_rows_total", labels) == 2


def test_processors_only_see_their_signals_tables() -> None:
    stream = chain({"type": "filter", "signals": ["logs"], "drop_where": "true"})
    rows = spans({"name": "a"})
    assert stream.process("spans", "acme", rows, [1]) == (rows, [1])
    assert stream.process("logs", "acme", logs({"body": "x"}), [1])[1] == [0]


def test_transform_sets_columns_and_keys_and_deletes_keys() -> None:
    rows = spans(
        {
            "name": "GET /users/123/orders/9",
            "duration_ns": 2_500_000,
            "attributes": [("user", "u1"), ("secret", "s"), ("keep", "k")],
            "resource_attributes": [("host.name", "h1")],
        },
        {"name": "GET /", "duration_ns": 1000, "attributes": None},
    )
    stream = chain(
        {
            "type": "transform",
            "signals": ["traces"],
            "set": {
                "attributes['env']": "'prod'",
                "attributes['user']": "NULL",
                "attributes['duration_ms']": "duration_ns // 1000000",
                "resource_attributes['host']": "upper(resource_attributes['host.name'])",
                "name": "regexp_replace(name, '/[0-9]+', '/{id}', 'g')",
                "duration_ns": "duration_ns // 1000",
            },
            "delete": ["secret", "resource_attributes['host.name']"],
        }
    )
    out, counts = stream.process("spans", "acme", rows, [2])
    assert counts == [2]
    assert out.schema == rows.schema
    assert column(out, "name") == ["GET /users/{id}/orders/{id}", "GET /"]
    assert column(out, "duration_ns") == [2500, 1]
    assert column(out, "attributes") == [
        [("keep", "k"), ("env", "prod"), ("duration_ms", "2")],
        [("env", "prod"), ("duration_ms", "0")],
    ]
    assert column(out, "resource_attributes") == [[("host", "H1")], None]  # upper(NULL): no key


MASK = [
    {
        "type": "redact",
        "patterns": [{"name": "order", "regex": r"ORD-\d{6}"}],
        "allow_keys": ["trace.note"],
        "deny_keys": ["password", "http.request.header.*"],
    },
]


@pytest.mark.parametrize("names", [1, EQUALS, EQUALS + 2], ids=["one", "compared", "looked-up"])
def test_key_in_by_comparison_or_set_lookup(names: int) -> None:
    keys = pa.array(["a", "b", "c", "d", "e", "f", "ab", ""], pa.string()).slice(1)
    wanted = ["b", "e", "f", "a", "zz", "c"][:names]
    assert key_in(keys, wanted).tolist() == [key in wanted for key in keys.to_pylist()]


def test_redact_masks_builtin_and_user_patterns_and_counts_per_rule() -> None:
    metrics = Metrics("bridge")
    rows = logs(
        {
            "body": "login by alice@example.com from 10.1.2.3, card 4111 1111 1111 1111, order ORD-123456",
            "attributes": [
                ("user.email", "bob@example.org"),
                ("password", "hunter2"),
                ("http.request.header.cookie", "a=b"),
                ("trace.note", "carol@example.com"),
                ("number", "4111111111111112"),
                ("auth", "Bearer abc.def-ghi"),
                ("key", "AKIAABCDEFGHIJKLMNOP"),
                ("peer", "2001:db8::1"),
            ],
            "resource_attributes": [("owner", "dave@example.net")],
        },
        {"body": "nothing here", "attributes": [("n", "1")]},
    )
    out, counts = chain(*MASK, metrics=metrics).process("logs", "acme", rows, [2])
    assert counts == [2]
    assert column(out, "body") == [
        "login by [REDACTED:email] from [REDACTED:ipv4], card [REDACTED:card], order [REDACTED:order]",
        "nothing here",
    ]
    assert column(out, "attributes") == [
        [
            ("user.email", "[REDACTED:email]"),
            ("password", "[REDACTED:deny_keys]"),
            ("http.request.header.cookie", "[REDACTED:deny_keys]"),
            ("trace.note", "carol@example.com"),
            ("number", "4111111111111112"),  # fails the Luhn check: not a card number
            ("auth", "[REDACTED:bearer]"),
            ("key", "[REDACTED:aws_access_key]"),
            ("peer", "[REDACTED:ipv6]"),
        ],
        [("n", "1")],
    ]
    assert column(out, "resource_attributes") == [[("owner", "[REDACTED:email]")], None]
    counted = {
        rule: sample_value(
            metrics,
            "orasi_stream_redactions_total",
            {"exporter": "lake", "processor": "redact_0", "rule": rule},
        )
        for rule in ("email", "ipv4", "ipv6", "card", "order", "deny_keys", "bearer", "aws_access_key")
    }
    assert counted == {
        "email": 3,
        "ipv4": 1,
        "ipv6": 1,
        "card": 1,
        "order": 1,
        "deny_keys": 2,
        "bearer": 1,
        "aws_access_key": 1,
    }


def test_redact_of_one_value_under_allowed_denied_and_other_keys() -> None:
    """A value is redacted per entry: as it is under an allowed key, wholly under a denied one,
    by the rules under any other; nulls stay null."""
    metrics = Metrics("bridge")
    email = "erin@example.com"
    rows = spans(
        {"attributes": [("note", email), ("secret", email), ("user", email), ("empty", None)]},
        {"attributes": [("secret", "s3"), ("user", email), ("note", "10.0.0.1")]},
        {"attributes": [("other", "plain")]},
    )
    stream = chain(
        {"type": "redact", "signals": ["traces"], "allow_keys": ["note"], "deny_keys": ["secret"]},
        metrics=metrics,
    )
    out, _ = stream.process("spans", "acme", rows, [3])
    assert column(out, "attributes") == [
        [("note", email), ("secret", "[REDACTED:deny_keys]"), ("user", "[REDACTED:email]"), ("empty", None)],
        [("secret", "[REDACTED:deny_keys]"), ("user", "[REDACTED:email]"), ("note", "10.0.0.1")],
        [("other", "plain")],
    ]
    labels = {**LAKE, "processor": "redact_0"}
    counted = {
        rule: sample_value(metrics, "orasi_stream_redactions_total", {**labels, "rule": rule})
        for rule in ("email", "ipv4", "deny_keys")
    }
    assert counted == {"email": 2, "ipv4": 0, "deny_keys": 2}


def test_redact_hashes_with_a_salt_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORASI_TEST_SALT", "s3cret")
    stream = chain(
        {
            "type": "redact",
            "builtins": ["email"],
            "action": "hash",
            "salt_env": "ORASI_TEST_SALT",
            "fields": ["attributes"],
        }
    )
    rows = spans(
        {"attributes": [("user", "alice@example.com")]},
        {"attributes": [("user", "to alice@example.com and bob@example.com")]},
    )

    def hashed(tenant: str, text: str) -> str:
        salt = hashlib.sha256(b"s3cret\0" + tenant.encode()).digest()
        return "sha256:" + hashlib.sha256(salt + text.encode()).hexdigest()[:32]

    out, _ = stream.process("spans", "acme", rows, [2])
    alice, bob = hashed("acme", "alice@example.com"), hashed("acme", "bob@example.com")
    assert column(out, "attributes") == [[("user", alice)], [("user", f"to {alice} and {bob}")]]
    other, _ = stream.process("spans", "globex", rows, [2])
    assert column(other, "attributes")[0] == [("user", hashed("globex", "alice@example.com"))]
    assert hashed("globex", "alice@example.com") != alice


@pytest.mark.parametrize("cache_chars", [redact.CACHE_CHARS, 10])
def test_redact_of_repeated_values_caches_each_value_and_counts_every_occurrence(
    monkeypatch: pytest.MonkeyPatch, cache_chars: int
) -> None:
    """Values that repeat (a resource's attributes on every span) go through the rules once and
    are cached: a second batch gives the same rows and counts again, and a hash stays per tenant;
    the same when the cache is full at every batch."""
    monkeypatch.setenv("ORASI_TEST_SALT", "s3cret")
    monkeypatch.setattr(redact, "CACHE_CHARS", cache_chars)
    metrics = Metrics("bridge")
    masks, hashes = (
        chain(*MASK, metrics=metrics),
        chain({"type": "redact", "action": "hash", "salt_env": "ORASI_TEST_SALT", "builtins": ["email"]}),
    )
    resource = [("owner", "dave@example.net"), ("host.ip", "10.1.2.3"), ("card", "4111111111111112")]
    rows = spans(*({"resource_attributes": resource, "attributes": [("n", str(i % 2))]} for i in range(8)))
    expected = [("owner", "[REDACTED:email]"), ("host.ip", "[REDACTED:ipv4]"), ("card", "4111111111111112")]
    for batch in (1, 2):
        out, _ = masks.process("spans", "acme", rows, [8])
        assert column(out, "resource_attributes") == [expected] * 8
        assert column(out, "attributes") == column(rows, "attributes")
        counted = [
            sample_value(
                metrics,
                "orasi_stream_redactions_total",
                {"exporter": "lake", "processor": "redact_0", "rule": rule},
            )
            for rule in ("email", "ipv4", "card")
        ]
        assert counted == [8 * batch, 8 * batch, 0]
    for tenant in ("acme", "globex", "acme"):
        salt = hashlib.sha256(b"s3cret\0" + tenant.encode()).digest()
        owner = "sha256:" + hashlib.sha256(salt + b"dave@example.net").hexdigest()[:32]
        out, _ = hashes.process("spans", tenant, rows, [8])
        assert {row[0] for row in column(out, "resource_attributes")} == {("owner", owner)}


def test_redact_with_hash_needs_its_salt() -> None:
    with pytest.raises(ValueError, match="ORASI_TEST_NO_SALT"):
        chain({"type": "redact", "action": "hash", "salt_env": "ORASI_TEST_NO_SALT"})


def test_luhn() -> None:
    assert luhn("4111 1111 1111 1111") and luhn("5500-0000-0000-0004") and luhn("378282246310005")
    assert not luhn("4111111111111112") and not luhn("1234567812345678")


def test_sample_keeps_whole_traces_by_the_low_56_bits_of_their_id() -> None:
    keep, drop = "f" * 18 + "80000000000000", "0" * 18 + "7fffffffffffff"
    stream = chain({"type": "sample", "probability": 0.5})
    out, counts = stream.process(
        "spans", "acme", spans({"trace_id": keep}, {"trace_id": drop}, {}), [1, 1, 1]
    )
    assert (column(out, "trace_id"), counts) == ([keep, None], [1, 0, 1])
    out, counts = stream.process("logs", "acme", logs({"trace_id": drop}, {"trace_id": keep}), [2])
    assert (column(out, "trace_id"), counts) == ([keep], [1])
    assert (
        threshold(0.5) == "80000000000000" and threshold(1.0) == "00000000000000" and threshold(0.0) is None
    )
    none = chain({"type": "sample", "probability": 0, "keep_without_trace": False})
    assert none.process("spans", "acme", spans({"trace_id": keep}, {}), [2])[1] == [0]
    every = chain({"type": "sample", "probability": 1})
    assert every.process("spans", "acme", spans({"trace_id": "0" * 32}), [1])[1] == [1]


@pytest.mark.parametrize(
    ("on_error", "names", "counts"), [("pass", ["7", "x"], [1, 1]), ("drop", [], [0, 0])]
)
def test_a_processor_failing_at_run_time_follows_on_error(
    on_error: str, names: list[str], counts: list[int]
) -> None:
    metrics = Metrics("bridge")
    stream = chain(
        {
            "type": "transform",
            "signals": ["traces"],
            "on_error": on_error,
            "name": "cast",
            "set": {"duration_ns": "CAST(name AS BIGINT)"},
        },
        metrics=metrics,
    )
    for _ in range(2):
        out, kept = stream.process("spans", "acme", spans({"name": "7"}, {"name": "x"}), [1, 1])
        assert (column(out, "name"), kept) == (names, counts)
    labels = {"exporter": "lake", "processor": "cast", "action": on_error}
    assert sample_value(metrics, "orasi_stream_errors_total", labels) == 2


def test_keep_counts() -> None:
    mask = np.array([True, False, False, False, True, True])
    assert keep_counts([2, 0, 2, 2], mask) == [1, 0, 0, 2]


def test_maps_of_a_sliced_batch_are_edited_in_place_of_their_rows() -> None:
    rows = spans(
        {"attributes": [("a", "x@example.com")]},
        {"attributes": [("a", "y@example.com"), ("b", "1")]},
        {"attributes": None},
        {"attributes": [("b", "2")]},
    ).slice(1, 3)
    stream = chain(
        {"type": "redact", "builtins": ["email"]},
        {
            "type": "transform",
            "signals": ["traces"],
            "set": {"attributes['c']": "attributes['b']"},
            "delete": ["b"],
        },
    )
    out, counts = stream.process("spans", "acme", rows, [3])
    assert counts == [3]
    assert column(out, "attributes") == [[("a", "[REDACTED:email]"), ("c", "1")], None, [("c", "2")]]


def test_expressions_are_computed_ahead_only_over_columns_unchanged_since() -> None:
    """The first transform's expression of the name is computed in the first filter's query (on
    the rows the filter then cuts), the second's of the redacted attributes after the redact, the
    last filter's with it (after the name's transform: it sees the new name)."""
    metrics = Metrics("bridge")
    stream = chain(
        {"type": "filter", "signals": ["traces"], "drop_where": "name = 'drop'"},
        {"type": "redact", "signals": ["traces"], "builtins": ["email"]},
        {"type": "transform", "signals": ["traces"], "set": {"name": "upper(name)"}},
        {"type": "transform", "signals": ["traces"], "set": {"attributes['copy']": "attributes['user']"}},
        {"type": "filter", "signals": ["traces"], "name": "again", "drop_where": "name = 'B'"},
        metrics=metrics,
    )
    rows = spans(
        {"name": "a", "attributes": [("user", "a@example.com")]},
        {"name": "drop", "attributes": [("user", "d@example.com")]},
        {"name": "b"},
        {"name": "c", "attributes": [("user", "none")]},
    )
    out, kept = stream.process("spans", "acme", rows, [2, 2])
    assert kept == [1, 1]
    assert column(out, "name") == ["A", "C"]
    assert column(out, "attributes") == [
        [("user", "[REDACTED:email]"), ("copy", "[REDACTED:email]")],
        [("user", "none"), ("copy", "none")],
    ]
    labels = {**LAKE, "processor": "redact_1", "rule": "email"}
    assert sample_value(metrics, "orasi_stream_redactions_total", labels) == 1


def test_a_later_expression_failing_on_rows_left_out_before_it_is_no_error() -> None:
    """The query computing ahead fails on the row the filter leaves out: each processor then
    computes its own, and nothing failed."""
    metrics = Metrics("bridge")
    stream = chain(
        {"type": "filter", "signals": ["traces"], "drop_where": "name = 'x'"},
        {
            "type": "transform",
            "signals": ["traces"],
            "name": "cast",
            "set": {"duration_ns": "CAST(name AS BIGINT)"},
        },
        metrics=metrics,
    )
    for _ in range(2):
        out, kept = stream.process("spans", "acme", spans({"name": "7"}, {"name": "x"}), [1, 1])
        assert (column(out, "duration_ns"), kept) == ([7], [1, 0])
    for action in ("pass", "drop"):
        labels = {**LAKE, "processor": "cast", "action": action}
        assert sample_value(metrics, "orasi_stream_errors_total", labels) == 0


def test_rows_left_out_are_filtered_as_arrow_filters_them() -> None:
    rows = spans(
        {"name": "a", "attributes": [("k", "1"), ("j", "2")], "resource_attributes": [("r", "x")]},
        {"name": "b", "attributes": None, "resource_attributes": []},
        {"name": "c", "attributes": [("k", "3")], "resource_attributes": [("r", "y"), ("s", "z")]},
        {"name": "d", "attributes": [], "resource_attributes": None},
        {"name": "e", "attributes": [("k", "5")], "resource_attributes": [("r", "w")]},
    )
    for part in (rows, rows.slice(1, 4)):  # a slice's maps start past their first entry
        for keep in ([True, False, True, True, False][: part.num_rows], [False] * part.num_rows):
            mask = np.array(keep)
            assert filter_rows(part, mask).equals(part.filter(mask))
