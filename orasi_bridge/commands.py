"""The bridge's own `orasi` commands, `orasi lake` and `orasi catalog`: jobs on a bridge's lake
from the command line, run in this process (``COMMANDS``, which the bridge's ``ServicePlugin``
names: the shared package imports no service).

The lake is the `lake` exporter of a bridge configuration file (``--config``; ``--exporter``
names it when the file has several), or `orasi up`'s (``--data-dir``, default .orasi; with
``--region`` one region of `orasi up --regions`). Each action adds its subparser to
``add_parsers``' groups and its branch to ``run``; this module imports nothing of the lake (nor
pyarrow) until one runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from orasi_common.config import ConfigError, load_config
from orasi_common.plugins import Commands
from orasi_common.telemetry.audit import audit, local_user


class Failed(Exception):
    """What the command prints on stderr before exiting 1."""


def add_parsers(commands: Any) -> list[argparse.ArgumentParser]:
    """Add `orasi lake` and `orasi catalog` to ``commands`` (argparse subparsers); the parsers."""
    lake: argparse.ArgumentParser = commands.add_parser(
        "lake", help="maintain and replicate a bridge's lake (orasi lake -h)"
    )
    actions = lake.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = common_options()
    verify = actions.add_parser(
        "verify",
        parents=[common],
        help="check that every data file reads, no batch was committed twice and row counts add up "
        "(exit 1 if not)",
    )
    verify.add_argument("--deep", action="store_true", help="also read every row group of every file")
    verify.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    restore = actions.add_parser(
        "restore",
        parents=[common],
        help="roll tables back to a snapshot or a time (stop their bridges first)",
    )
    restore.add_argument("--table", action="append", default=[], help="a table, repeatable (default: all)")
    target = restore.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-snapshot", type=int, metavar="ID", help="a snapshot id of the one --table")
    target.add_argument("--to-time", metavar="T", help="RFC 3339 or Unix ns: the last snapshot by then")
    restore.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    _add_replicate(actions, common)
    _add_maintenance(actions, common)
    return [lake, _add_catalog(commands, common)]


def _add_replicate(actions: Any, common: argparse.ArgumentParser) -> None:
    replicate = actions.add_parser(
        "replicate",
        parents=[common],
        help="copy the lake's new snapshots into the global lake (partitioned by region)",
    )
    replicate.add_argument("--to", metavar="WAREHOUSE", help="the global warehouse: s3://… or file://…")
    replicate.add_argument("--catalog", metavar="URI", help="the global lake's catalog URI")
    replicate.add_argument("--dry-run", action="store_true", help="print what would be copied, copy nothing")


MAINTENANCE = {
    "compact": "merge each partition's small files into files near the target size",
    "expire": "expire old snapshots (never within the dedup window) and remove orphan files",
    "retention": "delete the day partitions past each tenant's retention",
}
"""The lake maintenance jobs (orasi_bridge/lake/maintenance), run once with the lake's settings."""


def _add_maintenance(actions: Any, common: argparse.ArgumentParser) -> None:
    for action, what in MAINTENANCE.items():
        job = actions.add_parser(action, parents=[common], help=what)
        job.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")


def _add_catalog(commands: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    catalog: argparse.ArgumentParser = commands.add_parser(
        "catalog", help="back up and restore a lake's Iceberg catalog"
    )
    actions = catalog.add_subparsers(dest="action", required=True, metavar="ACTION")
    backup = actions.add_parser(
        "backup", parents=[common], help="print (or write) the tables' metadata pointers"
    )
    backup.add_argument("--output", metavar="FILE", help="write the backup here instead of stdout")
    restore = actions.add_parser(
        "restore", parents=[common], help="register the tables of a backup, or found in the warehouse"
    )
    source = restore.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "backup", nargs="?", metavar="FILE", help="a file of orasi catalog backup (- for stdin)"
    )
    source.add_argument(
        "--from-warehouse", action="store_true", help="each table's newest metadata file in the warehouse"
    )
    restore.add_argument(
        "--overwrite", action="store_true", help="replace the pointer of a table that exists"
    )
    restore.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    return catalog


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
        if args.command == "catalog":
            return _catalog_backup(args) if args.action == "backup" else _catalog_restore(args)
        if args.action == "verify":
            return _verify(args)
        if args.action == "restore":
            return _restore(args)
        if args.action == "replicate":
            return _replicate(args)
        if args.action in MAINTENANCE:
            return _maintain(args)
        raise Failed(f"unknown action {args.action!r}")
    except Failed as error:
        print(f"orasi {args.command} {args.action}: {error}", file=sys.stderr)
        return 1


def _lake(args: argparse.Namespace) -> Any:
    """The lake exporter's validated configuration (``orasi_bridge.lake.config.Config``)."""
    from pydantic import ValidationError

    from orasi_bridge.lake.config import Config

    try:
        return Config.model_validate(lake_config(args))
    except ValidationError as error:
        raise Failed(f"the lake's configuration is not valid: {error}") from None


def _verify(args: argparse.Namespace) -> int:
    from orasi_bridge.lake.verify import verify_lake

    reports = verify_lake(_lake(args), deep=args.deep)
    if args.json:
        print(json.dumps([dataclasses.asdict(report) for report in reports], indent=2))
    else:
        for report in reports:
            state = "ok" if not report.problems else f"{len(report.problems)} problems"
            counts = f"{report.files} files, {report.rows} rows, {len(report.snapshots)} snapshots"
            print(f"{report.name}: {counts}: {state}")
            for problem in report.problems:
                print(f"  - {problem}")
    return 1 if any(report.problems for report in reports) else 0


def _restore(args: argparse.Namespace) -> int:
    from orasi_bridge.lake.restore import RestoreRefused, restore
    from orasi_bridge.query.timerange import to_nanos
    from orasi_common.errors import MalformedData

    try:
        at_ns = to_nanos(args.to_time, "--to-time") if args.to_time else None
        rollbacks = restore(
            _lake(args),
            args.table,
            to_snapshot=args.to_snapshot,
            to_time_ms=None if at_ns is None else at_ns // 1_000_000,
            dry_run=args.dry_run,
        )
    except (RestoreRefused, MalformedData) as error:
        raise Failed(str(error)) from None
    verb = "would roll back" if args.dry_run else "rolled back"
    for rollback in rollbacks:
        if not rollback.snapshots_undone:
            print(f"{rollback.table}: already at snapshot {rollback.target_id}")
            continue
        print(
            f"{rollback.table}: {verb} {rollback.snapshots_undone} snapshots, {rollback.current_id} "
            f"({rollback.current_rows} rows) -> {rollback.target_id} ({rollback.target_rows} rows)"
        )
    if not args.dry_run:
        print("start the tables' bridges now: each replays its write-ahead log onto the restored tables")
        audit(
            "lake.restore",
            actor=local_user(),
            snapshots={r.table: [r.current_id, r.target_id] for r in rollbacks if r.snapshots_undone},
        )
    return 0


def _replicate(args: argparse.Namespace) -> int:
    """``--to``/``--catalog``, or else the lake's own `replicate` section, name the global lake."""
    from orasi_bridge.lake.config import ReplicateConfig
    from orasi_bridge.lake.replicate import ReplicationError, replicate

    lake = _lake(args)
    if not (args.to and args.catalog) and (lake.replicate is None or args.to or args.catalog):
        raise Failed("give --to and --catalog (or a replicate section in the lake's configuration)")
    try:
        target = ReplicateConfig(to=args.to, catalog_uri=args.catalog) if args.to else lake.replicate
        reports = replicate(lake, target, dry_run=args.dry_run)
    except (ReplicationError, ValueError) as error:
        raise Failed(str(error)) from None
    for report in reports:
        print(("would copy " if args.dry_run else "") + report.line())
    return 0


def _maintain(args: argparse.Namespace) -> int:
    """Run one maintenance job of the lake's `maintenance` settings and print its report."""
    from orasi_bridge.lake.maintenance.jobs import JOBS
    from orasi_bridge.lake.maintenance.tables import Lake

    config = _lake(args)
    lake = Lake(config)
    try:
        report = JOBS[args.action](lake, config.maintenance, args.dry_run, None)
    finally:
        lake.close()
    for line in report.lines():
        print(line)
    return 0


def _catalog_backup(args: argparse.Namespace) -> int:
    from orasi_bridge.lake.catalog_backup import backup

    text = json.dumps(backup(_lake(args)), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _catalog_restore(args: argparse.Namespace) -> int:
    from orasi_bridge.lake.catalog_backup import (
        CatalogRestoreRefused,
        pointers_in_warehouse,
        pointers_of,
        restore,
    )

    config = _lake(args)
    try:
        if args.from_warehouse:
            pointers = pointers_in_warehouse(config)
        else:
            try:
                text = sys.stdin.read() if args.backup == "-" else Path(args.backup).read_text()
                document = json.loads(text)
            except (OSError, ValueError) as error:
                raise Failed(f"cannot read the backup {args.backup}: {error}") from None
            pointers = pointers_of(document if isinstance(document, dict) else {})
        done = restore(config, pointers, overwrite=args.overwrite, dry_run=args.dry_run)
    except CatalogRestoreRefused as error:
        raise Failed(str(error)) from None
    for entry in done:
        action = (
            f"would be {entry.action}"
            if args.dry_run and entry.action in ("registered", "replaced")
            else entry.action
        )
        note = " (exists at another metadata file: --overwrite replaces it)" if entry.action == "kept" else ""
        print(f"{entry.table}: {action} {entry.metadata_location}{note}")
    if not args.dry_run:
        audit(
            "catalog.restore",
            actor=local_user(),
            tables={entry.table: entry.action for entry in done},
            from_warehouse=bool(args.from_warehouse),
        )
    return 0


COMMANDS = Commands(names=("lake", "catalog"), add_parsers=add_parsers, run=run)
