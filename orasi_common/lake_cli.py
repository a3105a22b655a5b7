"""`orasi lake`: jobs on a bridge's lake from the command line, run in this process.

The lake is the `lake` exporter of a bridge configuration file (``--config``; ``--exporter``
names it when the file has several), or `orasi up`'s (``--data-dir``, default .orasi; with
``--region`` one region of `orasi up --regions`). Each action adds its subparser to
``add_parser``'s group and its branch to ``run``; this module imports no service until one runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orasi_common.config import ConfigError, load_config


class Failed(Exception):
    """What the command prints on stderr before exiting 1."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    lake: argparse.ArgumentParser = commands.add_parser(
        "lake", help="maintain and replicate a bridge's lake (orasi lake -h)"
    )
    lake.add_subparsers(dest="action", required=True, metavar="ACTION")
    return lake


def common_options() -> argparse.ArgumentParser:
    """The options every action takes: where the lake is (``lake_config``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="a bridge configuration (its lake exporter)")
    common.add_argument("--exporter", metavar="ID", help="which lake exporter of --config")
    common.add_argument("--data-dir", default=".orasi", help="orasi up's data directory (default .orasi)")
    common.add_argument("--region", help="with --data-dir: one region of orasi up --regions")
    return common


def lake_config(args: argparse.Namespace) -> dict[str, Any]:
    """The raw configuration of the lake exporter the options name (validated by the caller)."""
    if args.config:
        try:
            service = load_config(args.config)
        except ConfigError as error:
            raise Failed(str(error)) from None
        lakes = {
            name: section or {}
            for name, section in service.exporters.items()
            if name.split("/", 1)[0] == "lake" and (args.exporter is None or name == args.exporter)
        }
        if len(lakes) != 1:
            wanted = f"the exporter {args.exporter!r}" if args.exporter else "exactly one lake exporter"
            raise Failed(f"{args.config}: needs {wanted}; it has {sorted(service.exporters) or 'none'}")
        return next(iter(lakes.values()))
    from orasi_common.up import lake_section  # the up module imports the topology, not a service

    data_dir = Path(args.data_dir) / args.region if args.region else Path(args.data_dir)
    if not (data_dir / "catalog.db").exists():
        raise Failed(
            f"{data_dir}: no lake here (orasi up writes catalog.db there); give --config or --data-dir"
        )
    return lake_section(data_dir, args.region or "local")


def run(args: argparse.Namespace) -> int:
    try:
        raise Failed(f"unknown action {args.action!r}")
    except Failed as error:
        print(f"orasi lake {args.action}: {error}", file=sys.stderr)
        return 1
