"""The global lake answers what the federation answers (issue 19): each region's lake replicated
into one global lake (lake/replicate.py), the same SQL run by DuckDB over the global tables.
Used at the end of the federation test, whose bridges are already running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from orasi_bridge.lake.catalog import open_catalog
from orasi_bridge.lake.config import Config, ReplicateConfig
from orasi_bridge.lake.replicate import global_config, replicate
from orasi_bridge.lake.schema import NAMESPACE
from orasi_common.testing.service_process import ServiceProcess


def global_lake_answers(
    bridges: list[ServiceProcess], tenant: str, queries: dict[str, str], directory: Path
) -> tuple[dict[str, list[list[Any]]], dict[str, int]]:
    """Stop ``bridges`` (their last flush commits what they buffered), replicate their lakes into a
    global lake under ``directory``, and answer each of ``queries`` over its spans of ``tenant``;
    also the global spans per region."""
    target = ReplicateConfig(
        to=f"file://{directory / 'warehouse'}", catalog_uri=f"sqlite:///{directory / 'g.db'}"
    )
    lakes = []
    for bridge in bridges:
        assert bridge.config is not None
        lakes.append(Config.model_validate(bridge.config["exporters"]["lake"]))
        bridge.stop()
    for lake in lakes:
        replicate(lake, target)
    catalog = open_catalog(global_config(lakes[0], target))
    try:
        spans = catalog.load_table(f"{NAMESPACE}.spans").scan(row_filter=f"tenant = '{tenant}'").to_arrow()
    finally:
        catalog.close()
    answers: dict[str, list[list[Any]]] = {}
    with duckdb.connect() as database:
        database.register("spans", spans)
        for label, sql in queries.items():
            result = database.sql(sql)
            assert result is not None, label
            answers[label] = [list(row) for row in result.fetchall()]
        by_region = database.sql("SELECT region, count(*) FROM spans GROUP BY region")
        assert by_region is not None
        return answers, dict(by_region.fetchall())
