"""`orasi up`: agent → gateway → bridge in one process, with embedded defaults.

The bridge keeps its Iceberg catalog and its schema registry in SQLite and its warehouse in a
local directory under ``--data-dir``; nothing outside this process is needed. Ports are the
public contract of ARCHITECTURE §9, each overridable with ``--port NAME=PORT``.

Crash safety: whatever the agent acknowledged is on disk (fsync'd), in the agent's
write-ahead-log queue (``<data-dir>/wal/agent``) or in the bridge's (``<data-dir>/wal/bridge``)
until it is committed, so a kill -9 followed by a start on the same data directory loses none
of it; the lake's batch-id record makes the replays exactly-once (see ``configs``). (A power
loss can still hit the newest files of the local warehouse, which are not fsync'd: README,
"What a crash loses".) A lock on ``<data-dir>/lock`` keeps a second `orasi up` from writing to
the same logs; the kernel releases it when the process dies, however it dies.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orasi_common import plugins
from orasi_common.config.model import ServiceConfig
from orasi_common.extensions.auth import local as auth_local
from orasi_common.ports import PORTS as PORTS
from orasi_common.service import Service
from orasi_common.topology import Ports, chain, service

if TYPE_CHECKING:
    from orasi_common.control.roles import Role

_MEMORY_LIMITER = {"limit_mib": 2048, "spike_limit_mib": 512}

LAKE_FLUSH_MIB = 48
"""Arrow rows the lake buffers before a flush, MiB. A flush holds them twice (sorted, for the
Parquet files) while the next rows arrive, and a span takes 1.2 KB as a lake row (its resource's
attributes repeated): with the default 128 MiB, reached only at the 5 s interval at 20k spans/s,
every flush raised RSS by 150-250 MiB (peaks of 720-770 MiB); at 48 MiB (a flush every 2 s)
the peaks stay near 540 MiB."""
LAKE_BUFFER_MIB = 256
"""Rows held not yet committed, MiB, past which the lake refuses (retryably) more: the agent's
log keeps the data meanwhile."""
LAKE_MAINTENANCE = {"compact_interval": 600, "expire_interval": 3600, "max_file_rows": 65_536}
"""The lake's maintenance in `orasi up` (its one bridge runs it, under a lock in the process):
small files compacted every 10 minutes into files of 65,536 rows at most (a compaction holds a
file's rows in memory, as Arrow: about 5 times their Arrow size at its peak, some 400 MiB for
spans at this size), snapshots older than ``keep_age`` (2 hours) expired and orphan files removed
every hour; no retention (a `retention` section and interval keep less)."""

GATEWAY_SEND_TIMEOUT = 5.0
"""Seconds the gateway gives the bridge to take a batch (one attempt, no retries of its own)."""
AGENT_SEND_TIMEOUT = 2 * GATEWAY_SEND_TIMEOUT
"""Seconds the agent waits for the gateway's answer: longer than the gateway may spend on a
batch, so that the agent does not send a batch again while the gateway is still on it."""
AGENT_BATCH_TIMEOUT = 0.05
"""Seconds the agent's ``batch`` gathers a group. With ``wait_for_send`` every request waits for
its group, so this bounds the acknowledgement's latency, and with it what a client that sends
one request at a time (the SDKs' batch processors do) can push: measured here with 512-span
requests, about 5,000 spans/s at 0.05 s against 2,000 at 0.2 s (concurrent senders reach the
same total either way)."""
AGENT_QUEUE_MEMORY_MIB = 16
"""Of the agent's logged queue, MiB kept in memory too; the rest is read back from the log."""


def configs(
    data_dir: Path,
    ports: Mapping[str, int],
    host: str,
    etcd: str | None = None,
    region: str = "us-east-1",
    rate_limits: Mapping[str, Any] | None = None,
    auth: bool = False,
) -> dict[str, ServiceConfig]:
    """The three services' configurations: agent → (OTLP) → gateway → (OTAP) → bridge.

    With ``rate_limits`` (the `ratelimit` extension's configuration: in this process unless it
    names a Redis), the agent's OTLP receiver, where the tenants' data enters, and the bridge's
    query API are limited by it; without, nothing is.

    With ``auth``, every receiver and the query API take bearer tokens kept in
    ``<data_dir>/tokens.db``, and each hop sends the forwarding token to the next
    (``extensions.auth.local``; ``run_up`` prepares the tokens).

    Each registers itself in the control plane (the `etcd` extension, last): in the etcd at
    ``etcd`` when given, otherwise in this process's registry (``control.registry.LOCAL``).

    The gateway and the bridge receive with `otap`, which serves OTLP and OTAP on one port.

    Acknowledged means on disk (ARCHITECTURE §3), with one write-ahead log at each end:

    - agent: ``batch`` with ``wait_for_send`` in front of an ``otlp`` exporter whose queue is a
      durable log, so an application's request is acknowledged once its group is fsync'd there.
      A batch leaves that log when the gateway acknowledged it; retryable failures are retried
      without a time limit (the log holds the data; when it is full, new data is refused).
    - gateway: holds nothing. No ``batch`` processor and no queue: it acknowledges a batch to the
      agent only once the bridge acknowledged it, so whatever the gateway held at a crash is still
      in the agent's log. It makes one attempt per batch, within ``GATEWAY_SEND_TIMEOUT``, and
      the agent (``AGENT_SEND_TIMEOUT``, longer) does the retrying from its log. Without a batch
      processor here the agent's batches reach the bridge with their ids unchanged, which is
      what makes replays exactly-once: a batch processor would merge a batch replayed after a
      crash with other neighbours than the first time, under a new id the lake has never seen.
      The alternative, a logged queue of its own, would write and fsync every batch a second
      time on the same disk and keep nothing that the agent's log does not already keep.
    - bridge: the ``lake`` exporter logs each batch before acknowledging it and replays the log
      into its buffers at start, skipping batches whose ids a commit already holds; a batch the
      agent sends again after a crash is recognised by its id too.
    """
    documents = _documents(data_dir, ports, host, "local")
    if rate_limits is not None:
        limited = {"agent": documents["agent"]["receivers"]["otlp"]}
        limited["bridge"] = documents["bridge"]["extensions"]["query_api"]
        for kind, component in limited.items():
            documents[kind].setdefault("extensions", {})["ratelimit"] = dict(rate_limits)
            listed = documents[kind]["service"].get("extensions") or []
            documents[kind]["service"]["extensions"] = ["ratelimit", *listed]
            component["rate_limit"] = {"limiter": "ratelimit"}
    if auth:
        auth_local.with_auth(documents, data_dir)
    for document in documents.values():
        _register(document, etcd, region)
    return {name: ServiceConfig.model_validate(document) for name, document in documents.items()}


def lake_section(data_dir: Path, region: str) -> dict[str, Any]:
    """The `lake` exporter's configuration of the chain under ``data_dir``; its rows say ``region``."""
    return {
        "region": region,
        "catalog_uri": f"sqlite:///{data_dir / 'catalog.db'}",
        "warehouse": f"file://{data_dir / 'warehouse'}",
        "flush_interval": 5,
        "flush_size_mib": LAKE_FLUSH_MIB,
        "max_buffer_mib": LAKE_BUFFER_MIB,
        "wal": {"directory": str(data_dir / "wal" / "bridge")},
        "maintenance": dict(LAKE_MAINTENANCE),
        # span_metrics_1m from the spans at each flush (the default, spelled out)
        "span_metrics": {"enabled": True, "allowed_lateness": 120},
    }


def _documents(
    data_dir: Path, ports: Mapping[str, int], host: str, lake_region: str
) -> dict[str, dict[str, Any]]:
    """``configs``'s documents before registration: one chain whose lake's rows say ``lake_region``."""
    wal = data_dir / "wal"
    lake = lake_section(data_dir, lake_region)
    documents = chain(
        Ports.of(ports, "agent", host),
        Ports.of(ports, "gateway", host),
        Ports.of(ports, "bridge", host),
        lake,
        receivers={"gateway": "otap", "bridge": "otap"},
        gateway_exporter="otap",
        processors={
            "agent": {
                "memory_limiter": _MEMORY_LIMITER,
                "resource": {},
                "batch": {"timeout": AGENT_BATCH_TIMEOUT, "wait_for_send": True},
            },
            "gateway": {"memory_limiter": _MEMORY_LIMITER},
            "bridge": {"memory_limiter": _MEMORY_LIMITER},
        },
        forwarding={
            "agent": {
                "timeout": AGENT_SEND_TIMEOUT,
                "retry_on_failure": {"initial_interval": 0.5, "max_interval": 5, "max_elapsed_time": 0},
                "sending_queue": {
                    "storage": {"directory": str(wal / "agent"), "memory_mib": AGENT_QUEUE_MEMORY_MIB}
                },
            },
            "gateway": {
                "timeout": GATEWAY_SEND_TIMEOUT,
                "retry_on_failure": {"enabled": False},
                "sending_queue": {"enabled": False},
            },
        },
    )
    # the schema registry: SQLite beside the catalog (not in it: the lake writes the catalog at
    # every flush) and, without Redis, the cache of this process (ARCHITECTURE §9)
    registry = {"store": f"sqlite:///{data_dir / 'registry.db'}"}
    documents["bridge"]["extensions"]["query_api"]["registry"] = registry
    return documents


def _register(document: dict[str, Any], etcd: str | None, region: str) -> None:
    """Add the `etcd` extension (last) registering ``document``'s service in ``region``."""
    document.setdefault("extensions", {})["etcd"] = {"endpoints": [etcd] if etcd else [], "region": region}
    document["service"]["extensions"] = [*document["service"].get("extensions", []), "etcd"]


REGION_PORT_STEP = 10
"""Region number ``i`` of ``--regions`` (0 for the first) listens on every port of the first plus
``i * REGION_PORT_STEP``: 4317, 4327, 4337 for the agents' gRPC, 8080, 8090, 8100 for the query
APIs, and so on. The step keeps every port apart for up to 10 regions (``region_ports`` checks)."""
BRIDGE_REGIONS = 2
"""The first regions of ``--regions`` run a bridge (primary, then secondary); the others do not."""


def region_ports(ports: Mapping[str, int], count: int) -> list[dict[str, int]]:
    """The ports of each of ``count`` regions (see ``REGION_PORT_STEP``); ValueError on a clash."""
    tables = [{name: port + i * REGION_PORT_STEP for name, port in ports.items()} for i in range(count)]
    used = [port for table in tables for port in table.values()]
    clashes = sorted({port for port in used if used.count(port) > 1})
    if clashes or max(used) > 65535:
        raise ValueError(
            f"the ports of {count} regions clash or overflow ({clashes or max(used)}): choose ports "
            f"{REGION_PORT_STEP * count} apart with --port, or fewer regions"
        )
    return tables


GLOBAL_LAKE_INTERVAL = 60.0
"""Seconds between two replications of each region's lake into the global lake of ``--regions``."""


def global_lake(data_dir: Path) -> dict[str, Any]:
    """The `replicate` section of ``--regions``' lakes: the global lake under ``<data_dir>/global``."""
    return {
        "to": f"file://{data_dir / 'global' / 'warehouse'}",
        "catalog_uri": f"sqlite:///{data_dir / 'global' / 'catalog.db'}",
        "interval": GLOBAL_LAKE_INTERVAL,
    }


def region_configs(
    data_dir: Path, ports: Mapping[str, int], host: str, regions: Sequence[str], etcd: str | None = None
) -> dict[tuple[str, str], ServiceConfig]:
    """The services of several regions in one process, ``(region, kind)`` → configuration, bridges
    first (the order to start them in).

    Every region runs an agent and a gateway; the first ``BRIDGE_REGIONS`` a bridge too, each with
    a lake, a catalog, a schema registry and logs of its own under ``<data_dir>/<region>/`` (the
    lake's ``region`` column is that region: where the row is stored); both lakes share the claims
    of batch ids (``<data_dir>/batch-claims.db``), so a batch that reached both is committed once,
    and each bridge copies its lake into the global lake every ``GLOBAL_LAKE_INTERVAL`` seconds
    (``global_lake``: ``<data_dir>/global``, partitioned by region; `orasi lake replicate`).
    Each agent stamps ``cloud.region`` on what it forwards (its resource processor), so a row also
    says where it was produced (``resource_attributes['cloud.region']``), whichever lake it reached.

    Each gateway sends with the `loadbalancing` exporter (OTAP, one attempt per batch as in
    ``configs``) to the bridges of its own region if it has one, else of the first region, with
    the other bridge region as the ``failover`` group: eu-west-1 → us-east-1, failing over to
    us-west-2. With ``etcd`` the groups are etcd resolvers (``service: bridge``, the group's
    ``region``); without, static lists of the bridges' ports (the etcd resolver reads a real etcd
    only; the in-process registry still holds every region's registrations, each under
    ``/orasi/<region>/``, and each bridge's federation a static list of both bridges, so a
    query with ``scope: global`` reads both lakes).
    """
    if len(set(regions)) != len(regions) or not regions:
        raise ValueError(f"--regions takes distinct region names, got {list(regions)}")
    tables = region_ports(ports, len(regions))
    homes = list(regions[:BRIDGE_REGIONS])
    peers = [
        {"region": home, "endpoint": f"{Ports.of(table, 'bridge', host).dial_host}:{table['bridge.query']}"}
        for home, table in zip(homes, tables, strict=False)
    ]
    claims = f"sqlite:///{data_dir / 'batch-claims.db'}"
    out: dict[tuple[str, str], ServiceConfig] = {}
    gateways: dict[str, dict[str, Any]] = {}
    agents: dict[str, dict[str, Any]] = {}
    for region, table in zip(regions, tables, strict=True):
        documents = _documents(data_dir / region, table, host, region)
        if region in homes:
            if not etcd:  # with etcd, federation finds the bridges in the control plane
                documents["bridge"]["extensions"]["query_api"]["federation"] = {"peers": peers}
            # one batch, one lake: the claims of batch ids both lakes share (lake/global_dedup.py)
            documents["bridge"]["exporters"]["lake"]["global_dedup"] = {"store": claims}
            # each lake copied into the global lake by its bridge (lake/replicate_schedule.py)
            documents["bridge"]["exporters"]["lake"]["replicate"] = global_lake(data_dir)
            _register(documents["bridge"], etcd, region)
            out[(region, "bridge")] = ServiceConfig.model_validate(documents["bridge"])
        primary = region if region in homes else homes[0]

        bridgeless = region not in homes  # its gateways follow the roles (orasi dr promote)
        failover = [other for other in homes if other != primary]

        def group(home: str, role: Role | None) -> dict[str, Any]:
            if etcd:
                resolver = {"service": "bridge", "region": home}
                return {"etcd": resolver if role is None else {**resolver, "role": role}}
            bridge = Ports.of(tables[regions.index(home)], "bridge", host)
            return {"static": {"endpoints": [f"{bridge.dial_host}:{bridge.grpc}"]}}

        balancer: dict[str, Any] = {
            "protocol": "otap",
            "resolver": group(primary, "primary" if bridgeless else None),
            "tls": {"insecure": True},
            "compression": "none",
            "endpoint_timeout": GATEWAY_SEND_TIMEOUT,
            "timeout": GATEWAY_SEND_TIMEOUT,
            "retry_on_failure": {"enabled": False},
            "sending_queue": {"enabled": False},
        }
        if failover:
            balancer["failover"] = group(failover[0], "secondary" if bridgeless else None)
        gateway_ports = Ports.of(table, "gateway", host)
        gateways[region] = service(
            gateway_ports, "otap", {"memory_limiter": _MEMORY_LIMITER}, "loadbalancing", balancer
        )
        agents[region] = documents["agent"]
        agents[region]["processors"]["resource"] = {"attributes": {"cloud.region": region}}
    for kind, documents_of in (("gateway", gateways), ("agent", agents)):
        for region, document in documents_of.items():
            _register(document, etcd, region)
            out[(region, kind)] = ServiceConfig.model_validate(document)
    return out


def banner(ports: Mapping[str, int], host: str, data_dir: Path) -> str:
    """What `orasi up` prints once every service accepts data."""
    at = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    query_url = f"http://{at}:{ports['bridge.query']}"
    curl_body = '{"sql": "SELECT count(*) FROM spans"}'
    lines = [
        ("send OTLP to the agent", f"grpc {at}:{ports['agent.grpc']}"),
        ("", f"http http://{at}:{ports['agent.http']}/v1/traces|metrics|logs"),
        ("query the lake", 'orasi query "SELECT service_name, count(*) FROM spans GROUP BY 1"'),
        ("", f"curl -s {query_url}/api/v1/query -H 'Content-Type: application/json' -d '{curl_body}'"),
        ("", f"Arrow Flight SQL grpc://{at}:{ports['bridge.flight_sql']} (ADBC, JDBC, ODBC drivers)"),
        ("web console", f"{query_url}/"),
        ("API docs", f"{query_url}/docs"),
        ("schema registry", f"{query_url}/registry (orasi schema --help)"),
        ("agent health, metrics", f"http://{at}:{ports['agent.admin']}/readyz, /metrics"),
        ("gateway, bridge admin", f"ports {ports['gateway.admin']}, {ports['bridge.admin']}"),
        ("data directory", str(data_dir)),
        ("stop with", "Ctrl-C"),
    ]
    return "\n".join(
        ["orasi up: ready", *(f"  {label + ':' if label else '':24} {text}" for label, text in lines)]
    )


def regions_banner(
    by_region: Mapping[tuple[str, str], ServiceConfig],
    ports: Mapping[str, int],
    host: str,
    data_dir: Path,
    etcd: str | None,
) -> str:
    """What `orasi up --regions` prints once every service accepts data: per region, where to send
    and (with a bridge) where to query, then the port scheme."""
    at = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    regions = list(dict.fromkeys(region for region, _ in by_region))
    tables = region_ports(ports, len(regions))
    lines = []
    for number, (region, table) in enumerate(zip(regions, tables, strict=True)):
        if (region, "bridge") in by_region:
            stored = f"bridge: query http://{at}:{table['bridge.query']}, lake {data_dir / region}"
        else:
            stored = f"no bridge: its gateway exports to {regions[0]}, failing over to {regions[1]}"
        lines.append(
            f"  {region} (ports +{number * REGION_PORT_STEP}): agent grpc {at}:{table['agent.grpc']} "
            f"http {at}:{table['agent.http']}, gateway {at}:{table['gateway.grpc']}; {stored}"
        )
    control = f"etcd {etcd}, /orasi/<region>/ (orasi fleet --etcd {etcd})" if etcd else "in-process"
    return "\n".join(
        [
            f"orasi up: ready, {len(regions)} regions",
            *lines,
            f"  {'control plane:':24} {control}",
            f"  {'port scheme:':24} region i listens on the first region's ports + {REGION_PORT_STEP} * i",
            f"  {'query every region:':24} the query API's scope: global (README, Federation)",
            f"  {'stop with':24} Ctrl-C",
        ]
    )


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on ``<data_dir>/lock`` while the returned file is open (blocking).

    An advisory ``flock``: the kernel drops it when the process ends, however it ends, so a
    killed `orasi up` leaves nothing stale behind. Raises OSError when another process holds it.
    """
    path = data_dir / "lock"
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OSError(
            f"another orasi up is using the data directory {data_dir} (it holds {path}); "
            "stop it, or choose another --data-dir"
        ) from None
    return handle


async def run_up(
    data_dir: Path,
    ports: Mapping[str, int],
    host: str,
    etcd: str | None = None,
    region: str = "us-east-1",
    regions: Sequence[str] = (),
    rate_limits: Mapping[str, Any] | None = None,
    auth: bool = False,
) -> None:
    """Run the services until SIGTERM or SIGINT (the caller tunes the allocators first): one
    region's three (``configs``, limited by ``rate_limits`` when given, behind tokens with
    ``auth``), or with ``regions`` every region's (``region_configs``)."""
    if regions:
        by_region = region_configs(data_dir, ports, host, regions, etcd)
        service_configs = [(kind, config) for (_, kind), config in by_region.items()]
        ready = regions_banner(by_region, ports, host, data_dir, etcd)
    else:
        service_configs = list(configs(data_dir, ports, host, etcd, region, rate_limits, auth).items())
        ready = banner(ports, host, data_dir)
    factories = {kind: plugins.load(kind).load_factories() for kind, _ in service_configs}
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    with await asyncio.to_thread(lock_data_dir, data_dir):
        if auth:
            first = await asyncio.to_thread(auth_local.prepare, data_dir)
            at = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
            lines = auth_local.banner_lines(
                data_dir, first, f"http://{at}:{ports['agent.http']}", f"http://{at}:{ports['bridge.query']}"
            )
            ready = "\n".join([ready, *lines])
        services = [Service(kind, config, factories[kind]) for kind, config in service_configs]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        started: list[Service] = []
        try:
            for service_ in services:  # bridges first: downstream before upstream
                await service_.start()
                started.append(service_)
            print(ready, flush=True)
            await stop.wait()
        finally:
            logging.getLogger("orasi.up").info("Stopping: agents, then gateways, then bridges.")
            for service_ in reversed(started):
                await service_.shutdown()
