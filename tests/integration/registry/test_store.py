"""The registry's store on real PostgreSQL and on SQLite: migrations, ids, versions, deletes, and
concurrent registrations from threads and from processes."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from orasi_bridge.registry.errors import Incompatible, NotSoftDeleted, SubjectNotFound, Unavailable
from orasi_bridge.registry.store import MIGRATIONS, Store, Version
from orasi_common.testing.service_process import free_port


@pytest.fixture
def store(store_uri: str) -> Iterator[Store]:
    store = Store(store_uri)
    store.migrate()
    yield store
    store.close()


def allow(_: Sequence[Version]) -> None:
    return None


def doc(n: int) -> str:
    return f'{{"properties":{{"attributes":{{"properties":{{"k{n}":{{"type":"string"}}}}}}}}}}'


def test_migrations_apply_once(store_uri: str) -> None:
    first, second = Store(store_uri), Store(store_uri)
    try:
        assert first.migrate() == [number for number, _ in MIGRATIONS] == [1, 2]
        assert second.migrate() == []
    finally:
        first.close()
        second.close()


def test_registering_the_same_text_returns_the_version_that_holds_it(store: Store) -> None:
    v1, added = store.register("t1", "spans.a", doc(1), allow)
    assert (v1.version, added) == (1, True)
    again, added = store.register("t1", "spans.a", doc(1), allow)
    assert (again, added) == (v1, False)
    v2, _ = store.register("t1", "spans.a", doc(2), allow)
    assert v2.version == 2 and v2.id != v1.id
    # ids are global: the same text under another subject has the same id, a new version there
    other, added = store.register("t1", "logs.a", doc(1), allow)
    assert (other.version, other.id, added) == (1, v1.id, True)
    assert store.versions("t1", "spans.a") == [v1, v2]
    assert store.subjects("t1") == ["logs.a", "spans.a"]
    assert store.schema("t1", v1.id) == doc(1)
    # tenants do not see each other's subjects or schemas
    assert store.subjects("t2") == []
    assert store.schema("t2", v1.id) is None


def test_a_refusing_check_adds_nothing(store: Store) -> None:
    store.register("t", "spans.a", doc(1), allow)
    seen: list[list[int]] = []

    def refuse(live: Sequence[Version]) -> None:
        seen.append([v.version for v in live])
        raise Incompatible("no")

    with pytest.raises(Incompatible):
        store.register("t", "spans.a", doc(2), refuse)
    assert seen == [[1]]
    assert [v.version for v in store.versions("t", "spans.a")] == [1]


def test_soft_then_permanent_delete(store: Store) -> None:
    v1, _ = store.register("t", "spans.a", doc(1), allow)
    store.register("t", "spans.a", doc(2), allow)
    store.set_setting("registry_config", "t", "spans.a", "FULL")
    with pytest.raises(NotSoftDeleted):
        store.delete_subject("t", "spans.a", permanent=True)
    assert store.delete_subject("t", "spans.a", permanent=False) == ([1, 2], [])
    assert store.subjects("t") == []
    assert store.subjects("t", deleted=True) == ["spans.a"]
    with pytest.raises(SubjectNotFound):
        store.delete_subject("t", "spans.a", permanent=False)
    # a soft-deleted subject's numbers are not reused
    v3, _ = store.register("t", "spans.a", doc(1), allow)
    assert (v3.version, v3.id) == (3, v1.id)
    store.delete_subject("t", "spans.a", permanent=False)
    versions, removed_ids = store.delete_subject("t", "spans.a", permanent=True)
    assert versions == [1, 2, 3]
    assert len(removed_ids) == 2 and store.schema("t", v1.id) is None
    assert store.setting("registry_config", "t", "spans.a") is None
    with pytest.raises(SubjectNotFound):
        store.delete_subject("t", "spans.a", permanent=True)


def test_settings_per_tenant_and_subject(store: Store) -> None:
    assert store.setting("registry_config", "t") is None
    store.set_setting("registry_config", "t", "", "FULL")
    store.set_setting("registry_config", "t", "spans.a", "NONE")
    store.set_setting("registry_mode", "t", "", "READONLY")
    assert store.setting("registry_config", "t") == "FULL"
    assert store.setting("registry_config", "t", "spans.a") == "NONE"
    assert store.setting("registry_config", "u") is None
    assert store.setting("registry_mode", "t") == "READONLY"
    store.set_setting("registry_config", "t", "spans.a", None)
    assert store.setting("registry_config", "t", "spans.a") is None


def test_concurrent_registrations_from_threads_never_share_a_version(store_uri: str, store: Store) -> None:
    stores = [Store(store_uri) for _ in range(8)]
    start = threading.Barrier(len(stores))
    texts = [doc(n) for n in range(24)] + [doc(0)] * 8  # some of them the same schema

    def register(index: int) -> list[Version]:
        start.wait()
        mine = texts[index :: len(stores)]
        return [stores[index].register("t", "spans.race", text, allow)[0] for text in mine]

    try:
        with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
            results = [v for vs in pool.map(register, range(len(stores))) for v in vs]
    finally:
        for each in stores:
            each.close()
    versions = store.versions("t", "spans.race")
    assert [v.version for v in versions] == list(range(1, 25))
    assert len({v.text for v in versions}) == 24
    by_text = {v.text: v for v in versions}
    assert all(by_text[r.text] == r for r in results)  # each caller got the version that holds it


def _register_in_a_process(uri: str, first: int, count: int, start_at: float) -> list[int]:
    time.sleep(max(0.0, start_at - time.time()))  # start together
    store = Store(uri)
    try:
        return [
            store.register("t", "spans.procs", doc(n), allow)[0].version for n in range(first, first + count)
        ]
    finally:
        store.close()


def test_concurrent_registrations_from_processes_never_share_a_version(pg_uri: str) -> None:
    store = Store(pg_uri)
    store.migrate()
    store.close()
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        futures = [pool.submit(_register_in_a_process, pg_uri, 100 * p, 10, start_at) for p in range(4)]
        versions = sorted(v for f in futures for v in f.result(timeout=60))
    assert versions == list(range(1, 41))
    try:
        assert [v.version for v in store.versions("t", "spans.procs")] == list(range(1, 41))
    finally:
        store.close()


def test_an_unreachable_store_is_unavailable_and_fast() -> None:
    store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/orasi_test")
    started = time.monotonic()
    with pytest.raises(Unavailable, match="cannot be reached"):
        store.subjects("t")
    assert time.monotonic() - started < 5


def test_observed_keys_are_recorded_once_per_type(store: Store) -> None:
    store.observe("t1", [("spans.a", "attributes", "k", "integer"), ("spans.a", "attributes", "k", "string")])
    store.observe(
        "t1", [("spans.a", "attributes", "k", "integer"), ("spans.b", "resource_attributes", "r", "string")]
    )
    store.observe("t2", [("spans.a", "attributes", "other", "boolean")])
    assert store.observed("t1", "spans.a") == [("attributes", "k", "integer"), ("attributes", "k", "string")]
    assert store.observed("t1", "spans.b") == [("resource_attributes", "r", "string")]
    assert store.observed("t1", "spans.c") == []
