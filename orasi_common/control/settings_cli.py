"""`orasi config get|set|delete|history KIND/COMPONENT_ID`: the live settings in etcd.

The key is ``control.settings``'s ``/orasi/<region>/config/<kind>/<component_id>``. ``set`` merges
``KEY=VALUE`` pairs (dotted keys for nested ones, values read as YAML scalars) or a ``--file``
over the stored object (``--replace``: instead of it), and checks the result before it writes:
every key must be reloadable by the component's type and its value valid for the type's
``Config`` model (rules between keys are checked by each service against its file
configuration, which ``set`` cannot see; a service refuses and counts what breaks them).
``history`` walks the key's versions backward (a read at each earlier modification revision),
newest first, and says when a compaction cut it short. Exit codes: 0; 1 etcd or key not found;
2 a refused value or bad arguments. Imports no service: the component types come from the
service's plugin (``plugins``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml

from orasi_common import plugins
from orasi_common.config.loader import format_validation_error
from orasi_common.control import settings
from orasi_common.control.fleet import EtcdUnreachable
from orasi_common.control.registry import etcd_client
from orasi_common.control.watch import close_client
from orasi_common.pipeline.component import component_type
from orasi_common.telemetry.audit import audit, local_user

DEFAULT_REGION = "us-east-1"


class Refused(Exception):
    """Arguments or a value ``set`` will not write (exit code 2)."""


def check(kind: str, component_id: str, stored: Mapping[str, Any]) -> None:
    """Refused (every problem, one per line) unless each key of ``stored`` is reloadable by the
    component type and its value valid for the type's ``Config`` model (a null resets a key)."""
    type_name = component_type(component_id)
    factories = plugins.load(kind).load_factories()
    found = [
        group[type_name]
        for group in (factories.processors, factories.exporters, factories.receivers, factories.extensions)
        if type_name in group
    ]
    reloadable = frozenset().union(*(settings.reloadable_keys(f.create) for f in found))
    if not reloadable:
        raise Refused(f"{component_id}: a {kind}'s {type_name!r} has no reloadable keys")
    factory = next(f for f in found if settings.reloadable_keys(f.create))
    problems = settings.not_reloadable(component_id, stored, reloadable)
    fields = factory.config_type.model_fields
    for key, value in stored.items():
        field = fields.get(key)
        if field is None or value is None:
            continue  # an unknown key is not reloadable (above); a null resets the key
        try:
            pydantic.TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
        except pydantic.ValidationError as error:
            problems += format_validation_error(error, f"{component_id}.{key}", value)
    if problems:
        raise Refused("\n".join(problems))


def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``["send_batch_size=2000", "circuit_breaker.open_duration=5"]`` → a nested object."""
    out: dict[str, Any] = {}
    for pair in pairs:
        path, sep, text = pair.partition("=")
        if not sep or not path:
            raise Refused(f"{pair!r}: write KEY=VALUE (e.g. send_batch_size=2000)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


@dataclass(frozen=True)
class Version:
    revision: int  # the modification revision
    value: bytes


@dataclass(frozen=True)
class History:
    versions: list[Version]  # newest first
    compacted: int | None  # the compaction revision that cut the walk, if one did
    created: int | None  # the revision the current incarnation of the key was created at


class Settings:
    """One etcd client for one command."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 3.0) -> None:
        self._endpoints = list(endpoints)
        self._timeout = timeout

    async def run(self, work: Any) -> Any:
        """``work(client)`` on the first endpoint that answers (``EtcdUnreachable`` if none does)."""
        import aetcd

        problems = []
        for url in self._endpoints:
            client = etcd_client(url, timeout=self._timeout)
            try:
                await client.connect()
                return await work(client)
            except (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, OSError) as error:
                problems.append(f"{url} ({type(error).__name__})")
            finally:
                await close_client(client)
        raise EtcdUnreachable(f"etcd does not answer at {', '.join(problems)}; pass --etcd URL")

    async def get(self, key: str) -> bytes | None:
        async def work(client: Any) -> bytes | None:
            found = await client.get(key.encode())
            return None if found is None else bytes(found.value)

        result: bytes | None = await self.run(work)
        return result

    async def put(self, key: str, value: bytes) -> None:
        async def work(client: Any) -> None:
            await client.put(key.encode(), value)

        await self.run(work)

    async def delete(self, key: str) -> bool:
        async def work(client: Any) -> bool:
            return (await client.delete(key.encode())) is not None

        deleted: bool = await self.run(work)
        return deleted

    async def history(self, key: str, limit: int = 100) -> History:
        import aetcd.rpc as rpc
        import grpc

        async def work(client: Any) -> History:
            versions: list[Version] = []
            revision = 0  # 0: now
            created = None
            while len(versions) < limit:
                request = rpc.RangeRequest(key=key.encode(), revision=revision)
                try:
                    reply = await client.kvstub.Range(request, timeout=self._timeout)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.OUT_OF_RANGE:  # compacted
                        return History(versions, revision, created)
                    raise
                if not reply.kvs:
                    break
                kv = reply.kvs[0]
                versions.append(Version(kv.mod_revision, bytes(kv.value)))
                created = kv.create_revision
                if kv.mod_revision <= kv.create_revision:
                    break
                revision = kv.mod_revision - 1
            return History(versions, None, created)

        result: History = await self.run(work)
        return result


def _show(document: Mapping[str, Any], as_json: bool) -> str:
    return (
        json.dumps(document, indent=2)
        if as_json
        else yaml.safe_dump(dict(document), sort_keys=False).rstrip()
    )


async def _command(args: Any, endpoints: Sequence[str], region: str) -> int:
    kind, component_id = settings.parse_target(args.target)
    key = settings.settings_key(region, kind, component_id)
    store = Settings(endpoints)
    if args.action == "get":
        value = await store.get(key)
        if value is None:
            print(f"orasi config: no live settings at {key}", file=sys.stderr)
            return 1
        print(_show(settings.decode(component_id, value), args.json))
        return 0
    if args.action == "delete":
        if not await store.delete(key):
            print(f"orasi config: no live settings at {key}", file=sys.stderr)
            return 1
        print(f"deleted {key}; every {kind} runs {component_id} with its file configuration again")
        audit("settings.delete", actor=local_user(), key=key)
        return 0
    if args.action == "history":
        history = await store.history(key)
        if not history.versions:
            print(f"orasi config: no live settings at {key}", file=sys.stderr)
            return 1
        for version in history.versions:
            try:
                shown = json.dumps(settings.decode(component_id, version.value), sort_keys=True)
            except settings.SettingsError as error:
                shown = f"(not an object: {error.message})"
            print(f"{version.revision}\t{shown}")
        if history.compacted is not None:
            print(f"(older versions were compacted: revision {history.compacted} is gone)")
        elif history.created is not None:
            print(f"(created at revision {history.created})")
        return 0
    # set
    if bool(args.pairs) == bool(args.file):
        raise Refused("give KEY=VALUE pairs or --file FILE (not both)")
    if args.file:
        try:
            change = settings.decode(component_id, await asyncio.to_thread(Path(args.file).read_bytes))
        except OSError as error:
            raise Refused(f"{args.file}: {error.strerror}") from None
    else:
        change = parse_assignments(args.pairs)
    stored: dict[str, Any] = {}
    if not args.replace:
        current = await store.get(key)
        try:
            stored = settings.decode(component_id, current) if current is not None else {}
        except settings.SettingsError as error:
            raise Refused(f"{error.message} (stored at {key}); write a new one with --replace") from None
    merged = dict(change) if args.replace else _merge_keeping_nulls(stored, change)
    check(kind, component_id, merged)
    await store.put(key, settings.encode(merged))
    print(f"set {key}:\n{_show(merged, args.json)}")
    # the keys changed, not their values (a value may be a credential)
    audit("settings.set", actor=local_user(), key=key, changed=sorted(change), replace=bool(args.replace))
    return 0


def _merge_keeping_nulls(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``change`` over ``base``, nested objects key by key; a null stays (it resets the key in the
    service) rather than removing the key as ``topology.deep_merge`` does."""
    out = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_keeping_nulls(out[key], value)
        else:
            out[key] = value
    return out


def run_config(args: Any, endpoints: Sequence[str], region: str) -> int:
    """``orasi config``: 0; 1 when etcd does not answer or the key is absent; 2 refused."""
    try:
        return asyncio.run(_command(args, endpoints, region))
    except (Refused, ValueError, settings.SettingsError) as error:
        message = error.message if isinstance(error, settings.SettingsError) else str(error)
        print(f"orasi config {args.action}: {message}", file=sys.stderr)
        return 2
    except EtcdUnreachable as error:
        print(f"orasi config {args.action}: {error}", file=sys.stderr)
        return 1


__all__ = ["History", "Refused", "Settings", "Version", "check", "parse_assignments", "run_config"]
