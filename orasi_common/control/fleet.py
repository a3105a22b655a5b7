"""`orasi fleet`: every instance registered in etcd, and what its admin ``/readyz`` answers.

One listing of ``/orasi/`` (or of one region's ``/orasi/<region>/services/``), read with the
record format of ``registration`` (keys outside ``services/``, such as leaders and settings, are
not registrations and are left out). Each instance's ``/readyz`` is probed concurrently with a
short timeout; its answer is the HTTP status, or ``unreachable``. A key or value that is not a
registration record is reported with its error, never ending the listing. Imports no service.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from orasi_common.control.registration import ROOT, MalformedRecord, Record, decode, parse_key, prefix
from orasi_common.control.registry import etcd_client

DEFAULT_ETCD = "http://127.0.0.1:2379"
ENV = "ORASI_ETCD_ENDPOINTS"
UNREACHABLE = "unreachable"
NO_ADMIN = "-"  # the readyz cell of an instance that registered no admin endpoint
COLUMNS = ("REGION", "KIND", "INSTANCE", "VERSION", "ZONE", "AGE", "READYZ", "ENDPOINTS")


class EtcdUnreachable(Exception):
    """No etcd endpoint answered the listing."""


@dataclass(frozen=True)
class Instance:
    region: str
    kind: str
    instance: str
    record: Record
    readyz: str  # an HTTP status, UNREACHABLE, or NO_ADMIN


@dataclass(frozen=True)
class Malformed:
    key: str
    error: str


@dataclass(frozen=True)
class Fleet:
    instances: list[Instance]  # sorted by region, kind, instance
    malformed: list[Malformed]  # sorted by key


def default_endpoints(environ: Mapping[str, str]) -> list[str]:
    """``$ORASI_ETCD_ENDPOINTS`` (comma-separated), or the local etcd."""
    listed = [url.strip() for url in environ.get(ENV, "").split(",") if url.strip()]
    return listed or [DEFAULT_ETCD]


async def _list(endpoints: Sequence[str], key_prefix: str, etcd_timeout: float) -> dict[str, bytes]:
    """Every key under ``key_prefix`` from the first endpoint that answers."""
    import aetcd  # lazily: only `orasi fleet` loads etcd's gRPC stubs

    problems = []
    for url in endpoints:
        try:
            client = etcd_client(url, timeout=etcd_timeout)
        except ValueError as error:  # not a URL
            problems.append(f"{url} ({error})")
            continue
        try:
            found = await client.get_prefix(key_prefix.encode())
            return {kv.key.decode("utf-8", "replace"): kv.value for kv in found}
        except (aetcd.ClientError, OSError) as error:
            first_line = (str(error).splitlines() or [""])[0]
            problems.append(f"{url} ({type(error).__name__}: {first_line})")
        finally:
            await client.close()
    raise EtcdUnreachable(
        f"etcd does not answer at {', '.join(problems)}; start it, or pass --etcd URL (or set ${ENV})"
    )


def _is_registration(key: str) -> bool:
    """Whether ``key`` lies under some ``/orasi/<region>/services/`` (and so must be a record)."""
    parts = key.split("/")
    return len(parts) > 3 and f"/{parts[1]}" == ROOT and parts[3] == "services"


async def _readyz(client: httpx.AsyncClient, admin: str | None) -> str:
    if admin is None:
        return NO_ADMIN
    try:
        return str((await client.get(f"http://{admin}/readyz")).status_code)
    except httpx.HTTPError:
        return UNREACHABLE


async def read_fleet(
    endpoints: Sequence[str],
    region: str | None = None,
    *,
    etcd_timeout: float = 3.0,
    probe_timeout: float = 1.0,
) -> Fleet:
    """The registered instances (of ``region``, or of every region) and their ``/readyz``;
    ``EtcdUnreachable`` when no endpoint answers."""
    listed = await _list(endpoints, prefix(region) if region else f"{ROOT}/", etcd_timeout)
    records: list[tuple[str, str, str, Record]] = []
    malformed: list[Malformed] = []
    for key in sorted(k for k in listed if _is_registration(k)):
        try:
            where = parse_key(key)
            records.append((where.region, where.kind, where.instance, decode(listed[key])))
        except MalformedRecord as error:
            malformed.append(Malformed(key, error.message))
    records.sort(key=lambda item: item[:3])
    async with httpx.AsyncClient(timeout=probe_timeout) as client, asyncio.TaskGroup() as probes:
        answers = [probes.create_task(_readyz(client, record.endpoints.admin)) for *_, record in records]
    instances = [
        Instance(region, kind, name, record, answer.result())
        for (region, kind, name, record), answer in zip(records, answers, strict=True)
    ]
    return Fleet(instances, malformed)


def format_age(seconds: float) -> str:
    """``42s``, ``5m07s``, ``3h04m``, ``2d05h`` (never negative: clocks drift)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _endpoints(record: Record) -> dict[str, str]:
    return {name: address for name, address in record.endpoints.model_dump().items() if address is not None}


def _age(record: Record, now: datetime) -> float:
    return (now - record.started_at).total_seconds()


def format_table(fleet: Fleet, now: datetime) -> str:
    """The fleet as an aligned text table, then one ``MALFORMED <key>: <error>`` line per bad record."""
    rows = [list(COLUMNS)] + [
        [
            item.region,
            item.kind,
            item.instance,
            item.record.version,
            item.record.zone or "-",
            format_age(_age(item.record, now)),
            item.readyz,
            " ".join(f"{name}={address}" for name, address in _endpoints(item.record).items()),
        ]
        for item in fleet.instances
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines += [f"MALFORMED {bad.key}: {bad.error}" for bad in fleet.malformed]
    return "\n".join(lines)


def to_json(fleet: Fleet, now: datetime) -> dict[str, Any]:
    """The fleet as a JSON document: ``instances`` (sorted) and ``malformed`` (key and error)."""
    return {
        "instances": [
            {
                "region": item.region,
                "kind": item.kind,
                "instance": item.instance,
                "version": item.record.version,
                "zone": item.record.zone,
                "started_at": item.record.started_at.isoformat().replace("+00:00", "Z"),
                "age_seconds": round(_age(item.record, now), 3),
                "endpoints": _endpoints(item.record),
                "readyz": item.readyz,
            }
            for item in fleet.instances
        ],
        "malformed": [{"key": bad.key, "error": bad.error} for bad in fleet.malformed],
    }


def run_fleet(endpoints: Sequence[str], region: str | None, as_json: bool) -> int:
    """``orasi fleet``: print the fleet; 0, or 2 when etcd does not answer."""
    try:
        if region is not None:
            prefix(region)  # a region holding a '/' is refused before etcd is asked
    except ValueError as error:
        print(f"orasi fleet: {error}", file=sys.stderr)
        return 2
    try:
        fleet = asyncio.run(read_fleet(endpoints, region))
    except EtcdUnreachable as error:
        print(f"orasi fleet: {error}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    print(json.dumps(to_json(fleet, now), indent=2) if as_json else format_table(fleet, now))
    return 0
