"""Where the registry keeps its schemas: PostgreSQL (the lake catalog's database) or SQLite.

One SQL layer over the two DB-API drivers (psycopg, sqlite3): statements are written with ``?``
placeholders and portable SQL (``INSERT ... ON CONFLICT DO NOTHING`` runs on both); the few
differences are the ``Dialect``'s. Every method is blocking: the registry calls them in a
thread, never on the event loop.

Tables (all ``registry_``-prefixed, beside the Iceberg catalog's own)::

    registry_migrations  version, applied_at           — one row per applied migration
    registry_schemas     id (global), tenant, text     — UNIQUE (tenant, text): same text, same id
    registry_versions    tenant, subject, version, schema_id, deleted
                         PRIMARY KEY (tenant, subject, version)
    registry_config      tenant, subject ('' = the tenant's default), compatibility
    registry_mode        tenant, subject ('' = the tenant's default), mode
    registry_validation  tenant, subject ('' = the tenant's default), validation (migration 2)
    registry_observed    tenant, subject, section, key, type                   (migration 2)
                         — the attribute keys and original types ingest has seen

Migrations are numbered and applied once, in order, under a lock (PostgreSQL: an advisory
lock; SQLite: ``BEGIN IMMEDIATE``), so that bridges starting together apply each once.

Registration is serialised per subject (PostgreSQL: ``pg_advisory_xact_lock`` on the tenant
and subject; SQLite: the database's write lock), and the compatibility check runs inside that
transaction, against the versions as they are then; the primary key makes two schemas with one
version number impossible whatever happens.

A store that cannot be reached raises ``Unavailable`` (HTTP 503); connections are pooled and a
broken one is dropped, so the store recovers by itself once its server is back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import psycopg

from orasi_bridge.registry.errors import NotSoftDeleted, SubjectNotFound, Unavailable

CONNECT_TIMEOUT = 3
"""Seconds to open a PostgreSQL connection before the store counts as unreachable."""
TCP_USER_TIMEOUT_MS = 5000
"""Milliseconds sent data may stay unacknowledged before the connection counts as broken: a
server that went silent (rather than refusing) makes a write fail with 503 within seconds, not
the kernel's minutes."""
POOL_SIZE = 4


@dataclass(frozen=True)
class Version:
    version: int
    id: int
    text: str
    deleted: bool = False


class Connection(Protocol):
    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    serial: str  # the type of an auto-numbered primary key
    begin: str  # how a writing transaction starts
    migration_lock: str | None
    subject_lock: str | None  # takes (tenant || '/' || subject)

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.name == "postgresql" else statement


POSTGRESQL = Dialect(
    "postgresql",
    serial="BIGSERIAL PRIMARY KEY",
    begin="BEGIN",
    migration_lock="SELECT pg_advisory_xact_lock(7307157)",
    subject_lock="SELECT pg_advisory_xact_lock(7307158, hashtext(?))",
)
SQLITE = Dialect(
    "sqlite",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    begin="BEGIN IMMEDIATE",  # takes the write lock now: registrations queue up here
    migration_lock=None,
    subject_lock=None,
)

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE IF NOT EXISTS registry_schemas (id {serial}, tenant TEXT NOT NULL, "
            "text TEXT NOT NULL, UNIQUE (tenant, text))",
            "CREATE TABLE IF NOT EXISTS registry_versions (tenant TEXT NOT NULL, subject TEXT NOT NULL, "
            "version INTEGER NOT NULL, schema_id BIGINT NOT NULL REFERENCES registry_schemas (id), "
            "deleted BOOLEAN NOT NULL DEFAULT FALSE, PRIMARY KEY (tenant, subject, version))",
            "CREATE TABLE IF NOT EXISTS registry_config (tenant TEXT NOT NULL, subject TEXT NOT NULL, "
            "compatibility TEXT NOT NULL, PRIMARY KEY (tenant, subject))",
            "CREATE TABLE IF NOT EXISTS registry_mode (tenant TEXT NOT NULL, subject TEXT NOT NULL, "
            "mode TEXT NOT NULL, PRIMARY KEY (tenant, subject))",
        ),
    ),
    (
        2,
        (
            "CREATE TABLE IF NOT EXISTS registry_validation (tenant TEXT NOT NULL, subject TEXT NOT NULL, "
            "validation TEXT NOT NULL, PRIMARY KEY (tenant, subject))",
            "CREATE TABLE IF NOT EXISTS registry_observed (tenant TEXT NOT NULL, subject TEXT NOT NULL, "
            "section TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, "
            "PRIMARY KEY (tenant, subject, section, key, type))",
        ),
    ),
)


def store_uri(catalog_uri: str) -> str:
    """The registry's database for a lake catalog URI (a SQLAlchemy URL): the same database."""
    return catalog_uri.replace("postgresql+psycopg://", "postgresql://", 1).replace(
        "postgresql+psycopg2://", "postgresql://", 1
    )


class Store:
    """The registry's tables in the database at ``uri`` (``postgresql://…`` or ``sqlite:///path``)."""

    def __init__(self, uri: str) -> None:
        uri = store_uri(uri)
        if uri.startswith(("postgresql://", "postgres://")):
            self.dialect = POSTGRESQL
            self._connect: Callable[[], Connection] = lambda: psycopg.connect(
                uri, connect_timeout=CONNECT_TIMEOUT, tcp_user_timeout=TCP_USER_TIMEOUT_MS
            )
            self._errors: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
        elif uri.startswith("sqlite:///"):
            self.dialect = SQLITE
            path = unquote(uri.removeprefix("sqlite:///").split("?", 1)[0])  # as SQLAlchemy reads it
            self._connect = lambda: sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._errors = (sqlite3.OperationalError,)
        else:
            raise ValueError(
                f"the registry's store must be postgresql:// or sqlite:///, not {uri.split(':')[0]}"
            )
        self._where = _redact(uri)
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue(POOL_SIZE)

    # -- connections and transactions

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Any]:
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = self._open()
        try:
            cursor = connection.cursor()
            if self.dialect is SQLITE:
                cursor.execute(SQLITE.begin if write else "BEGIN")
            yield cursor
            connection.commit()
        except self._errors as error:
            with contextlib.suppress(Exception):
                connection.close()
            raise Unavailable(
                f"the registry's store ({self._where}) cannot be reached: {error}", 1.0
            ) from error
        except BaseException:
            with contextlib.suppress(Exception):
                connection.rollback()
            self._release(connection)
            raise
        self._release(connection)

    def _open(self) -> Connection:
        try:
            return self._connect()
        except self._errors as error:
            raise Unavailable(
                f"the registry's store ({self._where}) cannot be reached: {error}", 1.0
            ) from error

    def _release(self, connection: Connection) -> None:
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            connection.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _run(self, cursor: Any, statement: str, *params: Any) -> Any:
        cursor.execute(self.dialect.sql(statement), params)
        return cursor

    # -- migrations

    def migrate(self) -> list[int]:
        """Apply the migrations not applied yet; returns their numbers."""
        applied = []
        with self._transaction(write=True) as cursor:
            if self.dialect.migration_lock:
                self._run(cursor, self.dialect.migration_lock)
            self._run(
                cursor,
                "CREATE TABLE IF NOT EXISTS registry_migrations (version INTEGER PRIMARY KEY, "
                "applied_at TEXT NOT NULL)",
            )
            done = {row[0] for row in self._run(cursor, "SELECT version FROM registry_migrations").fetchall()}
            for number, statements in MIGRATIONS:
                if number in done:
                    continue
                for statement in statements:
                    self._run(cursor, statement.format(serial=self.dialect.serial))
                now = dt.datetime.now(dt.UTC).isoformat()
                self._run(cursor, "INSERT INTO registry_migrations VALUES (?, ?)", number, now)
                applied.append(number)
        return applied

    # -- reads

    def subjects(self, tenant: str, deleted: bool = False) -> list[str]:
        with self._transaction() as cursor:
            rows = self._run(
                cursor,
                "SELECT DISTINCT subject FROM registry_versions WHERE tenant = ? AND (deleted = FALSE OR ?) "
                "ORDER BY subject",
                tenant,
                deleted,
            ).fetchall()
        return [row[0] for row in rows]

    def versions(self, tenant: str, subject: str, deleted: bool = False) -> list[Version]:
        """The subject's versions, oldest first (soft-deleted ones only with ``deleted``)."""
        with self._transaction() as cursor:
            return self._versions(cursor, tenant, subject, deleted)

    def _versions(self, cursor: Any, tenant: str, subject: str, deleted: bool) -> list[Version]:
        rows = self._run(
            cursor,
            "SELECT v.version, v.schema_id, s.text, v.deleted FROM registry_versions v "
            "JOIN registry_schemas s ON s.id = v.schema_id "
            "WHERE v.tenant = ? AND v.subject = ? AND (v.deleted = FALSE OR ?) ORDER BY v.version",
            tenant,
            subject,
            deleted,
        ).fetchall()
        return [Version(int(r[0]), int(r[1]), r[2], bool(r[3])) for r in rows]

    def schema(self, tenant: str, schema_id: int) -> str | None:
        with self._transaction() as cursor:
            row = self._run(
                cursor, "SELECT text FROM registry_schemas WHERE tenant = ? AND id = ?", tenant, schema_id
            ).fetchone()
        return None if row is None else str(row[0])

    def setting(self, table: str, tenant: str, subject: str = "") -> str | None:
        """The tenant's (``subject`` '') or a subject's compatibility (``registry_config``) or mode
        (``registry_mode``), None when unset."""
        column = _SETTINGS[table]
        with self._transaction() as cursor:
            row = self._run(
                cursor, f"SELECT {column} FROM {table} WHERE tenant = ? AND subject = ?", tenant, subject
            ).fetchone()
        return None if row is None else str(row[0])

    # -- writes

    def register(
        self, tenant: str, subject: str, text: str, check: Callable[[Sequence[Version]], None]
    ) -> tuple[Version, bool]:
        """Register ``text`` under ``subject``: (its version, True) when added, (the version that
        already holds it, False) otherwise. ``check`` sees the subject's live versions, inside the
        transaction that adds the new one, and raises to refuse it."""
        with self._transaction(write=True) as cursor:
            if self.dialect.subject_lock:
                self._run(cursor, self.dialect.subject_lock, f"{tenant}/{subject}")
            live = self._versions(cursor, tenant, subject, deleted=False)
            for version in live:
                if version.text == text:
                    return version, False
            check(live)
            self._run(
                cursor,
                "INSERT INTO registry_schemas (tenant, text) VALUES (?, ?) ON CONFLICT DO NOTHING",
                tenant,
                text,
            )
            schema_id = self._run(
                cursor, "SELECT id FROM registry_schemas WHERE tenant = ? AND text = ?", tenant, text
            ).fetchone()[0]
            last = self._run(
                cursor,
                "SELECT MAX(version) FROM registry_versions WHERE tenant = ? AND subject = ?",
                tenant,
                subject,
            ).fetchone()[0]
            number = int(last or 0) + 1
            self._run(
                cursor,
                "INSERT INTO registry_versions (tenant, subject, version, schema_id) VALUES (?, ?, ?, ?)",
                tenant,
                subject,
                number,
                schema_id,
            )
        return Version(number, int(schema_id), text), True

    def delete_subject(self, tenant: str, subject: str, permanent: bool) -> tuple[list[int], list[int]]:
        """Soft-delete the subject's versions, or (``permanent``) remove the soft-deleted ones.
        Returns (the versions deleted, the schema ids no longer used anywhere and removed)."""
        with self._transaction(write=True) as cursor:
            if self.dialect.subject_lock:
                self._run(cursor, self.dialect.subject_lock, f"{tenant}/{subject}")
            every = self._versions(cursor, tenant, subject, deleted=True)
            if not every:
                raise SubjectNotFound(subject)
            if not permanent:
                live = [v.version for v in every if not v.deleted]
                if not live:
                    raise SubjectNotFound(subject)
                self._run(
                    cursor,
                    "UPDATE registry_versions SET deleted = TRUE WHERE tenant = ? AND subject = ?",
                    tenant,
                    subject,
                )
                return live, []
            if any(not v.deleted for v in every):
                raise NotSoftDeleted(
                    f"Subject '{subject}' was not deleted first before being permanently deleted "
                    "(DELETE it without ?permanent=true first)."
                )
            self._run(
                cursor, "DELETE FROM registry_versions WHERE tenant = ? AND subject = ?", tenant, subject
            )
            orphans = []
            for schema_id in {v.id for v in every}:
                used = self._run(
                    cursor, "SELECT 1 FROM registry_versions WHERE schema_id = ? LIMIT 1", schema_id
                ).fetchone()
                if used is None:
                    self._run(cursor, "DELETE FROM registry_schemas WHERE id = ?", schema_id)
                    orphans.append(schema_id)
            for table in _SETTINGS:
                self._run(cursor, f"DELETE FROM {table} WHERE tenant = ? AND subject = ?", tenant, subject)
            return [v.version for v in every], sorted(orphans)

    def observe(self, tenant: str, seen: Sequence[tuple[str, str, str, str]]) -> None:
        """Record (subject, section, key, type) as seen; those recorded already stay as they are."""
        with self._transaction(write=True) as cursor:
            cursor.executemany(
                self.dialect.sql(
                    "INSERT INTO registry_observed (tenant, subject, section, key, type) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
                ),
                [(tenant, *row) for row in sorted(seen)],  # sorted: concurrent writers lock in one order
            )

    def observed(self, tenant: str, subject: str) -> list[tuple[str, str, str]]:
        """The (section, key, type) seen of the subject, sorted."""
        with self._transaction() as cursor:
            rows = self._run(
                cursor,
                "SELECT section, key, type FROM registry_observed WHERE tenant = ? AND subject = ? "
                "ORDER BY section, key, type",
                tenant,
                subject,
            ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def set_setting(self, table: str, tenant: str, subject: str, value: str | None) -> None:
        """Set (or, with None, remove) a compatibility level or a mode; ``subject`` '' = the tenant's."""
        column = _SETTINGS[table]
        with self._transaction(write=True) as cursor:
            self._run(cursor, f"DELETE FROM {table} WHERE tenant = ? AND subject = ?", tenant, subject)
            if value is not None:
                self._run(
                    cursor,
                    f"INSERT INTO {table} (tenant, subject, {column}) VALUES (?, ?, ?)",
                    tenant,
                    subject,
                    value,
                )


_SETTINGS = {"registry_config": "compatibility", "registry_mode": "mode", "registry_validation": "validation"}


def _redact(uri: str) -> str:
    """The URI without its password, for messages."""
    parsed = urlparse(uri)
    if parsed.password:
        return uri.replace(f":{parsed.password}@", ":***@", 1)
    return uri


__all__ = ["MIGRATIONS", "Store", "Version", "store_uri"]
