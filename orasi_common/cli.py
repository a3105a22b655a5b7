"""The `orasi` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orasi_common import plugins, schema_cli
from orasi_common.allocator import tune_allocators
from orasi_common.bench import cli as bench
from orasi_common.config import ConfigError, load_config
from orasi_common.extensions.auth import cli as tokens_cli
from orasi_common.pipeline.graph import resolve
from orasi_common.ports import PORTS
from orasi_common.ports import SERVICES as PRODUCT_SERVICES
from orasi_common.version import __version__


def _services() -> list[str]:
    """The service commands: the product's three, and any other service an entry point declares."""
    return list(dict.fromkeys([*PRODUCT_SERVICES, *plugins.names()]))


def _run_service(service: str, config_path: str) -> int:
    plugin = plugins.load(service)  # imports the module declaring it only: no pyarrow yet
    if plugin.tune_allocators:
        tune_allocators()  # before the factories import pyarrow (see its docstring)
    from orasi_common.service import Service
    from orasi_common.telemetry.logs import configure_logging

    try:
        config = load_config(config_path)
        instance = Service(service, config, plugin.load_factories(), config_path)
    except ConfigError as error:
        print(f"orasi {service}: {error}", file=sys.stderr)
        return 2
    configure_logging(config.service.telemetry.logs.level)
    try:
        import uvloop

        uvloop.run(instance.run_until_signal())
    except OSError as error:
        print(f"orasi {service}: cannot start: {error}", file=sys.stderr)
        return 1
    return 0


def _validate(path: str, service: str) -> int:
    factories = plugins.load(service).load_factories()
    try:
        config = load_config(path)
        resolve(config, factories)
    except ConfigError as error:
        print(f"orasi validate-config: {error}", file=sys.stderr)
        return 1
    pipelines = ", ".join(config.service.pipelines)
    print(f"{path}: valid {service} configuration (pipelines: {pipelines})")
    return 0


def _up(
    data_dir: str,
    host: str,
    overrides: list[str],
    etcd: str | None = None,
    regions: str | None = None,
    rate_limits: str | None = None,
    auth: bool = False,
) -> int:
    from orasi_common.telemetry.logs import configure_logging
    from orasi_common.up import run_up

    ports = dict(PORTS)
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in PORTS or not value.isdigit():
            print(f"orasi up: --port takes NAME=PORT with NAME one of {', '.join(PORTS)}", file=sys.stderr)
            return 2
        ports[name] = int(value)
    limits = None
    if auth and regions:
        print("orasi up: --auth applies to one region; leave out --regions", file=sys.stderr)
        return 2
    if rate_limits is not None:
        if regions:
            print("orasi up: --rate-limits applies to one region; leave out --regions", file=sys.stderr)
            return 2
        import yaml  # here: the other commands do without it

        try:
            limits = yaml.safe_load(Path(rate_limits).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            print(f"orasi up: cannot read --rate-limits: {error}", file=sys.stderr)
            return 2
    configure_logging("warning")
    tune_allocators()  # before the services import pyarrow
    try:
        import uvloop

        region = os.environ.get("ORASI_REGION", "us-east-1")
        names = [name.strip() for name in regions.split(",")] if regions else []
        uvloop.run(run_up(Path(data_dir).resolve(), ports, host, etcd, region, names, limits, auth))
    except (OSError, ValueError) as error:
        print(f"orasi up: cannot start: {error}", file=sys.stderr)
        return 1
    return 0


def _query(args: argparse.Namespace) -> int:
    from orasi_common.query_client import run_query

    return run_query(args.url, args.sql, args.start, args.end, args.format, args.tenant, args.api_key)


def _fleet(args: argparse.Namespace) -> int:
    from orasi_common.control.fleet import default_endpoints, run_fleet  # aetcd only for this command

    return run_fleet(args.etcd or default_endpoints(os.environ), args.region, args.json)


def _dr(args: argparse.Namespace) -> int:
    from orasi_common.control.fleet import default_endpoints  # aetcd only for this command
    from orasi_common.control.roles import run_promote

    return run_promote(args.etcd or default_endpoints(os.environ), args.region, args.dry_run)


def _config(args: argparse.Namespace) -> int:
    from orasi_common.control.fleet import default_endpoints  # aetcd only for this command
    from orasi_common.control.settings_cli import DEFAULT_REGION, run_config

    region = args.region or os.environ.get("ORASI_REGION", DEFAULT_REGION)
    return run_config(args, args.etcd or default_endpoints(os.environ), region)


def _add_config(commands: Any) -> None:
    config = commands.add_parser("config", help="read and write live settings in etcd (orasi config -h)")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    target = "KIND/COMPONENT_ID, e.g. gateway/batch or gateway/loadbalancing/bridges"
    for name, text in (
        ("get", "print the stored object of reloadable keys"),
        ("set", "check and write reloadable keys (merged with the stored object)"),
        ("delete", "delete the stored object: the component runs with its file configuration"),
        ("history", "the stored object's versions, newest first, with their etcd revisions"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("target", metavar="KIND/COMPONENT_ID", help=target)
        action.add_argument(
            "--etcd",
            action="append",
            metavar="URL",
            help="an etcd endpoint, repeatable (default: $ORASI_ETCD_ENDPOINTS or http://127.0.0.1:2379)",
        )
        action.add_argument("--region", help="region (default: $ORASI_REGION or us-east-1)")
        action.add_argument("--json", action="store_true", help="print JSON instead of YAML")
        if name == "set":
            action.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="values are YAML scalars")
            action.add_argument("--file", metavar="FILE", help="a YAML or JSON object instead of pairs")
            action.add_argument("--replace", action="store_true", help="overwrite the stored object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orasi", description="OpenTelemetry pipeline and lakehouse.")
    parser.add_argument("--version", action="version", version=f"orasi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    services = _services()
    own: list[plugins.Commands] = []  # the services' own commands (the bridge's orasi lake, ...)
    for service in services:
        try:
            plugin = plugins.load(service)
            text = plugin.help
            found = plugin.load_commands()
            own.extend([found] if found is not None else [])
        except plugins.ServiceNotFound:
            text = "not installed (run it to see what to reinstall)"
        command = commands.add_parser(service, help=text)
        command.add_argument("--config", required=True, metavar="FILE", help="YAML configuration")
    up = commands.add_parser("up", help="run agent, gateway and bridge with embedded defaults")
    up.add_argument("--data-dir", default=".orasi", help="where the lake and catalog live (default .orasi)")
    up.add_argument("--host", default="127.0.0.1", help="address every port binds to (default 127.0.0.1)")
    up.add_argument("--port", action="append", default=[], metavar="NAME=PORT", help="override one port")
    up.add_argument(
        "--etcd",
        metavar="URL",
        help="register the three services in this etcd, region $ORASI_REGION (default: in-process)",
    )
    up.add_argument(
        "--regions",
        metavar="R1,R2,...",
        help="run several regions in this process: an agent and a gateway in each, a bridge and a lake in "
        "the first two; region i on the ports + 10*i (README, Regions)",
    )
    up.add_argument(
        "--rate-limits",
        metavar="FILE",
        help="YAML of the `ratelimit` extension: per-tenant limits on the agent's OTLP receiver and "
        "the query API, in this process (README, Rate limits); default: none",
    )
    up.add_argument(
        "--auth",
        action="store_true",
        help="require bearer tokens on every receiver and the query API, kept in <data-dir>/tokens.db "
        "(orasi tokens --store sqlite:///<data-dir>/tokens.db); the first start prints a first token "
        "once (README, Tokens)",
    )
    query = commands.add_parser("query", help="run SQL against a bridge's query API")
    query.add_argument("sql", help="one SELECT over spans, logs, metric_points")
    query.add_argument("--start", help="RFC 3339 or Unix ns (default: end - 1 h)")
    query.add_argument("--end", help="RFC 3339 or Unix ns (default: now)")
    query.add_argument("--format", choices=["table", "json", "csv"], default="table")
    query.add_argument("--url", default="http://127.0.0.1:8080", help="the bridge's REST API")
    query.add_argument("--tenant", help="tenant to read (X-Orasi-Tenant)")
    query.add_argument("--api-key", default=os.environ.get("ORASI_API_KEY"), help="API key ($ORASI_API_KEY)")
    fleet = commands.add_parser("fleet", help="list the instances registered in etcd and their /readyz")
    fleet.add_argument("--region", help="one region (default: every region under /orasi/)")
    fleet.add_argument(
        "--etcd",
        action="append",
        metavar="URL",
        help="an etcd endpoint, repeatable (default: $ORASI_ETCD_ENDPOINTS, comma-separated, "
        "or http://127.0.0.1:2379)",
    )
    fleet.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    _add_config(commands)
    dr = commands.add_parser("dr", help="disaster recovery: region roles in etcd (orasi dr -h)")
    dr_actions = dr.add_subparsers(dest="action", required=True, metavar="ACTION")
    promote = dr_actions.add_parser(
        "promote", help="make a region the primary (the former primary becomes the secondary)"
    )
    promote.add_argument("--region", required=True, help="the region to promote, e.g. us-west-2")
    promote.add_argument("--etcd", action="append", metavar="URL", help="an etcd endpoint, repeatable")
    promote.add_argument("--dry-run", action="store_true", help="print the change, write nothing")
    bench.add_parser(commands)
    schema_cli.add_parser(commands)
    for declared in own:
        for command in declared.add_parsers(commands):
            command.set_defaults(run_own=declared.run)
    tokens_cli.add_parser(commands)
    validate = commands.add_parser("validate-config", help="check a configuration file and exit")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument(
        "--service", choices=services, default="agent", help="which service the file configures"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            return _up(
                args.data_dir, args.host, args.port, args.etcd, args.regions, args.rate_limits, args.auth
            )
        if args.command == "query":
            return _query(args)
        if args.command == "fleet":
            return _fleet(args)
        if args.command == "dr":
            return _dr(args)
        if args.command == "config":
            return _config(args)
        if args.command == "schema":
            return schema_cli.run(args)
        if getattr(args, "run_own", None) is not None:
            return int(args.run_own(args))
        if args.command == "tokens":
            return tokens_cli.run(args)
        if args.command == "bench":
            return bench.run(args)
        if args.command == "validate-config":
            return _validate(args.file, args.service)
        return _run_service(args.command, args.config)
    except plugins.ServiceNotFound as error:
        print(f"orasi {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
