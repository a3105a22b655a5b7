"""The `orasi` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from orasi_common.config import ConfigError, load_config
from orasi_common.pipeline.component import Factories
from orasi_common.pipeline.graph import resolve
from orasi_common.version import __version__


def _factories(service: str) -> Factories:
    if service == "agent":
        from orasi_agent.factories import FACTORIES

        return FACTORIES
    raise SystemExit(f"orasi: the {service} service is not available in this build")


def _run_service(service: str, config_path: str) -> int:
    from orasi_common.service import Service
    from orasi_common.telemetry.logs import configure_logging

    try:
        config = load_config(config_path)
        instance = Service(service, config, _factories(service))
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
    try:
        config = load_config(path)
        resolve(config, _factories(service))
    except ConfigError as error:
        print(f"orasi validate-config: {error}", file=sys.stderr)
        return 1
    pipelines = ", ".join(config.service.pipelines)
    print(f"{path}: valid {service} configuration (pipelines: {pipelines})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orasi", description="OpenTelemetry pipeline and lakehouse.")
    parser.add_argument("--version", action="version", version=f"orasi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    agent = commands.add_parser("agent", help="run the per-node agent")
    agent.add_argument("--config", required=True, metavar="FILE", help="YAML configuration")
    validate = commands.add_parser("validate-config", help="check a configuration file and exit")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument(
        "--service", choices=["agent"], default="agent", help="which service the file configures"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "agent":
        return _run_service("agent", args.config)
    if args.command == "validate-config":
        return _validate(args.file, args.service)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
