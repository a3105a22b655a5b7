"""The registry: subjects' versions, compatibility and settings, over the store and the cache.

Every method takes the caller's tenant (resolved by the REST API as queries resolve theirs).
Writes go to the store (in a thread) and then invalidate the tenant's cache in every bridge;
reads go through the cache (``cache``). Ingest (the lake writer) reads ``policies`` per chunk of
rows: a dictionary kept by ``warm`` and loaded again after every change of the tenant's, no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orasi_bridge.registry import compatibility
from orasi_bridge.registry.cache import Cache
from orasi_bridge.registry.compatibility import Level, parse_level
from orasi_bridge.registry.config import VALIDATION_MODES, RegistryConfig
from orasi_bridge.registry.errors import (
    Incompatible,
    InvalidLevel,
    InvalidMode,
    InvalidSchemaError,
    InvalidVersion,
    ReadOnlyMode,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)
from orasi_bridge.registry.schema import InvalidSchema, InvalidSubject, Schema, Subject, canonical, parse
from orasi_bridge.registry.store import Store, Version
from orasi_bridge.registry.validate import Policy
from orasi_common.errors import OrasiError
from orasi_common.pipeline.tasks import TaskScope

MODES = ("READWRITE", "READONLY")
SCHEMA_TYPE = "JSON"
_PARSED_MAX = 4096
_OBSERVED_MAX = 100_000
"""Observed (subject, section, key, type) this bridge remembers having written."""


@dataclass(frozen=True)
class Latest:
    """A subject's newest live version, parsed: what a validator needs."""

    version: int
    id: int
    schema: Schema


class Registry:
    def __init__(self, config: RegistryConfig, store_uri: str, logger: logging.Logger) -> None:
        self.store = Store(config.store or store_uri)
        self.cache = Cache(config.redis, logger)
        self.cache.on_invalidate = self._rewarm
        self.default_level = Level(config.compatibility)
        self.default_validation = config.validation
        self._policies: dict[str, dict[str, dict[str, Policy]]] = {}
        self._observed: set[tuple[str, str, str, str]] = set()
        self._logger = logger
        self._parsed: dict[tuple[str, str], Schema] = {}
        self._tasks = TaskScope()

    async def start(self) -> None:
        applied = await asyncio.to_thread(self.store.migrate)
        if applied:
            self._logger.info("Registry tables migrated.", extra={"migrations": applied})
        await self._tasks.open()
        await self.cache.start(self._tasks)

    async def shutdown(self) -> None:
        await self._tasks.close(cancel=True)
        await self.cache.close()
        await asyncio.to_thread(self.store.close)

    # -- the validator's path

    def cached_latest(self, tenant: str, subject: str) -> Latest | None:
        """The subject's newest live version from memory, or None (then call ``latest``)."""
        rows = self.cache.peek(tenant, f"versions:{subject}")
        return None if rows is None else self._latest(subject, rows)

    async def latest(self, tenant: str, subject: str) -> Latest | None:
        return self._latest(subject, await self._rows(tenant, subject))

    def _latest(self, subject: str, rows: Sequence[Sequence[Any]]) -> Latest | None:
        for version, schema_id, text, deleted in reversed(rows):
            if not deleted:
                return Latest(version, schema_id, self._schema(text, Subject.parse(subject)))
        return None

    # -- ingest: validation policies and observed types

    def policies(self, tenant: str) -> dict[str, dict[str, Policy]] | None:
        """Lake table → service → the policy of each of the tenant's subjects whose validation
        is not off and that has a live version; None until ``warm`` loaded the tenant. No I/O:
        the writer calls it per chunk of rows."""
        return self._policies.get(tenant)

    async def warm(self, tenant: str) -> None:
        """Load the tenant's policies; they are loaded again after each change of the tenant's
        (``_rewarm``), so a new version or mode applies to ingest within a second."""
        for _ in range(3):
            generation = self.cache.generation(tenant)
            default = await self.validation(tenant)
            found: dict[str, dict[str, Policy]] = {}
            for name in await self.subjects(tenant):
                mode = await self.validation(tenant, name, default)
                latest = await self.latest(tenant, name) if mode != "off" else None
                if latest is not None:
                    subject = Subject.parse(name)
                    found.setdefault(subject.table, {})[subject.service] = Policy(mode, latest.schema)
            self._policies[tenant] = found
            if self.cache.generation(tenant) == generation:
                return  # nothing changed while reading

    async def validation(self, tenant: str, subject: str | None = None, default: str | None = None) -> str:
        """The validation mode that applies: the subject's, else the tenant's, else the configured."""
        for scope in ([subject] if subject else []) + ([""] if default is None else []):
            value = await self._setting("registry_validation", tenant, scope)
            if value is not None:
                return value
        return default or self.default_validation

    async def set_validation(self, tenant: str, subject: str | None, mode: object) -> str:
        if mode not in VALIDATION_MODES:
            raise InvalidLevel(f"Invalid validation {mode!r}: one of {', '.join(VALIDATION_MODES)}")
        if subject is not None:
            _subject(subject)
        value = str(mode)
        await asyncio.to_thread(self.store.set_setting, "registry_validation", tenant, subject or "", value)
        await self.cache.invalidate(tenant)
        return value

    async def observe(self, tenant: str, seen: set[tuple[str, str, str, str]]) -> None:
        """Record (subject, section, key, type) as seen (those recorded by this bridge before are
        not written again)."""
        new = seen - self._observed
        if not new:
            return
        await asyncio.to_thread(self.store.observe, tenant, sorted(new))
        if len(self._observed) + len(new) > _OBSERVED_MAX:
            self._observed.clear()
        self._observed |= new

    async def observed(self, tenant: str, subject: str) -> dict[str, dict[str, list[str]]]:
        """Section → key → the original types seen of the subject."""
        _subject(subject)
        found: dict[str, dict[str, list[str]]] = {}
        for section, key, kind in await asyncio.to_thread(self.store.observed, tenant, subject):
            found.setdefault(section, {}).setdefault(key, []).append(kind)
        return found

    def _rewarm(self, tenant: str, keys: set[str]) -> None:
        """After an invalidation, read again the subjects' versions that memory held, and the
        tenant's ingest policies."""
        if tenant in self._policies:
            with contextlib.suppress(RuntimeError):  # not started, or shutting down
                self._tasks.spawn(self._refresh_policies(tenant))
        for key in keys:
            if key.startswith("versions:"):
                with contextlib.suppress(RuntimeError):  # not started, or shutting down
                    self._tasks.spawn(self._refresh(tenant, key.removeprefix("versions:")))

    async def _refresh_policies(self, tenant: str) -> None:
        try:
            await self.warm(tenant)
        except OrasiError as error:  # the policies known stay; the next change tries again
            self._logger.warning(
                "Registry: reloading the validation policies failed.", extra={"error": error.message}
            )

    async def _refresh(self, tenant: str, subject: str) -> None:
        try:
            await self._rows(tenant, subject)
        except OrasiError as error:  # the next read tries again
            self._logger.debug("Registry: a cache refresh failed.", extra={"error": error.message})

    # -- reads

    async def _rows(self, tenant: str, subject: str) -> list[list[Any]]:
        """Every version of the subject, soft-deleted ones included: [version, id, text, deleted]."""

        async def load() -> list[list[Any]]:
            versions = await asyncio.to_thread(self.store.versions, tenant, subject, True)
            return [[v.version, v.id, v.text, v.deleted] for v in versions]

        rows: list[list[Any]] = await self.cache.read(tenant, f"versions:{subject}", load)
        return rows

    async def versions(self, tenant: str, subject: str, deleted: bool = False) -> list[Version]:
        versions = [Version(*row) for row in await self._rows(tenant, subject)]
        shown = [v for v in versions if deleted or not v.deleted]
        if not shown:
            raise SubjectNotFound(subject)
        return shown

    async def version(self, tenant: str, subject: str, version: str, deleted: bool = False) -> Version:
        versions = await self.versions(tenant, subject, deleted)
        number = parse_version(version)
        if number == -1:
            return versions[-1]
        for each in versions:
            if each.version == number:
                return each
        raise VersionNotFound(f"Version {version} not found.")

    async def subjects(self, tenant: str, deleted: bool = False) -> list[str]:
        async def load() -> list[str]:
            return await asyncio.to_thread(self.store.subjects, tenant, deleted)

        subjects: list[str] = await self.cache.read(tenant, f"subjects:{deleted}", load)
        return subjects

    async def schema_by_id(self, tenant: str, schema_id: int) -> str:
        async def load() -> str | None:
            return await asyncio.to_thread(self.store.schema, tenant, schema_id)

        text: str | None = await self.cache.read(tenant, f"id:{schema_id}", load)
        if text is None:
            raise SchemaNotFound("Schema not found")
        return text

    async def lookup(self, tenant: str, subject: str, body: dict[str, Any], deleted: bool = False) -> Version:
        _, text = self._candidate(subject, body)
        for version in await self.versions(tenant, subject, deleted):
            if version.text == text:
                return version
        raise SchemaNotFound("Schema not found")

    async def compatibility(self, tenant: str, subject: str | None = None) -> Level:
        """The level that applies: the subject's, else the tenant's, else the configured default."""
        for scope in ([subject] if subject else []) + [""]:
            value = await self._setting("registry_config", tenant, scope)
            if value is not None:
                return Level(value)
        return self.default_level

    async def mode(self, tenant: str) -> str:
        return await self._setting("registry_mode", tenant, "") or "READWRITE"

    async def _setting(self, table: str, tenant: str, subject: str) -> str | None:
        async def load() -> str | None:
            return await asyncio.to_thread(self.store.setting, table, tenant, subject)

        value: str | None = await self.cache.read(tenant, f"{table}:{subject}", load)
        return value

    # -- compatibility

    async def check(self, tenant: str, subject: str, version: str, body: dict[str, Any]) -> list[str]:
        """Why ``body``'s schema may not follow ``subject``'s ``version``: a number (that version,
        in the level's direction), 'latest' (the versions the level names) or 'all' (every
        version); [] when it may."""
        candidate, _ = self._candidate(subject, body)
        level = await self.compatibility(tenant, subject)
        live = await self.versions(tenant, subject)
        if version == "all":
            against = live
            if level is not Level.NONE and not level.transitive:
                level = Level(f"{level}_TRANSITIVE")
        elif parse_version(version) == -1:
            against = live
        else:
            against = [await self.version(tenant, subject, version)]
            level = Level(level.removesuffix("_TRANSITIVE"))
        parsed = Subject.parse(subject)
        registered = [(v.version, self._schema(v.text, parsed)) for v in against]
        return compatibility.check(level, candidate, registered)

    # -- writes

    async def register(self, tenant: str, subject: str, body: dict[str, Any]) -> Version:
        """Register ``body``'s schema under ``subject`` (or find the version that holds it)."""
        candidate, text = self._candidate(subject, body)
        await self._writable(tenant)
        level = await self.compatibility(tenant, subject)
        parsed = Subject.parse(subject)

        def check(live: Sequence[Version]) -> None:
            problems = compatibility.check(
                level, candidate, [(v.version, self._schema(v.text, parsed)) for v in live]
            )
            if problems:
                raise Incompatible(
                    f"Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}" (compatibility {level}), details: {json.dumps(problems)}'
                )

        version, added = await asyncio.to_thread(self.store.register, tenant, subject, text, check)
        if added:
            await self.cache.invalidate(tenant)
            self._logger.info(
                "Schema registered.",
                extra={"tenant": tenant, "subject": subject, "version": version.version, "id": version.id},
            )
        return version

    async def delete_subject(self, tenant: str, subject: str, permanent: bool) -> list[int]:
        await self._writable(tenant)
        versions, _ = await asyncio.to_thread(self.store.delete_subject, tenant, subject, permanent)
        await self.cache.invalidate(tenant)
        return versions

    async def set_compatibility(self, tenant: str, subject: str | None, level: object) -> Level:
        try:
            parsed = parse_level(level)
        except ValueError as error:
            raise InvalidLevel(f"Invalid compatibility level: {error}") from None
        if subject is not None:
            _subject(subject)
        scope = subject or ""
        await asyncio.to_thread(self.store.set_setting, "registry_config", tenant, scope, parsed.value)
        await self.cache.invalidate(tenant)
        return parsed

    async def delete_compatibility(self, tenant: str, subject: str | None) -> Level:
        """Remove the subject's (or the tenant's) own level; returns the level that applied."""
        if subject is not None:
            _subject(subject)
        previous = await self.compatibility(tenant, subject)
        await asyncio.to_thread(self.store.set_setting, "registry_config", tenant, subject or "", None)
        await self.cache.invalidate(tenant)
        return previous

    async def set_mode(self, tenant: str, mode: object) -> str:
        value = str(mode).upper()
        if value not in MODES:
            raise InvalidMode(f"Invalid mode {mode!r}: one of {', '.join(MODES)}")
        await asyncio.to_thread(self.store.set_setting, "registry_mode", tenant, "", value)
        await self.cache.invalidate(tenant)
        return value

    async def _writable(self, tenant: str) -> None:
        if await self.mode(tenant) == "READONLY":
            raise ReadOnlyMode('The registry is in READONLY mode (PUT /mode {"mode": "READWRITE"}).')

    # -- parsing

    def _candidate(self, subject: str, body: dict[str, Any]) -> tuple[Schema, str]:
        """A request's schema, parsed, and its canonical text; InvalidSchemaError (42201) if not."""
        parsed = _subject(subject)
        schema_type = body.get("schemaType") or SCHEMA_TYPE
        if schema_type != SCHEMA_TYPE:
            raise InvalidSchemaError(
                f"Invalid schema: schemaType {schema_type!r} is not supported; this registry holds JSON "
                'Schemas of lake rows (schemaType "JSON")'
            )
        if body.get("references"):
            raise InvalidSchemaError("Invalid schema: references are not supported")
        raw = body.get("schema")
        if not isinstance(raw, str):
            raise InvalidSchemaError('Invalid schema: "schema" must be the JSON Schema document as a string')
        try:
            document = json.loads(raw)
        except ValueError as error:
            raise InvalidSchemaError(f"Invalid schema: the schema is not valid JSON: {error}") from None
        try:
            schema = parse(document, parsed)
        except InvalidSchema as error:
            raise InvalidSchemaError(f"Invalid schema: {error}") from None
        return schema, canonical(document)

    def _schema(self, text: str, subject: Subject) -> Schema:
        key = (subject.table, text)
        schema = self._parsed.get(key)
        if schema is None:
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.pop(next(iter(self._parsed)))
            schema = self._parsed[key] = parse(json.loads(text), subject)
        return schema


def _subject(subject: str) -> Subject:
    try:
        return Subject.parse(subject)
    except InvalidSubject as error:
        raise InvalidSchemaError(f"Invalid subject: {error}") from None


def parse_version(version: str) -> int:
    """A version path segment: 'latest' (or -1) → -1, else a positive number; 42202 otherwise."""
    if version == "latest":
        return -1
    try:
        number = int(version)
    except ValueError:
        number = 0
    if number == -1 or 1 <= number <= 2**31 - 1:
        return number
    raise InvalidVersion(
        f"The specified version '{version}' is not a valid version id. Allowed values are between "
        '[1, 2^31-1] and the string "latest"'
    )


__all__ = ["MODES", "Latest", "Registry", "parse_version"]
