"""The lake's configuration: the local directories it reports for orasi_storage_usage_percent."""

from __future__ import annotations

from orasi_bridge.lake.config import Config as LakeConfig


def test_the_lake_names_every_local_directory_it_writes() -> None:
    config = LakeConfig.model_validate(
        {
            "catalog_uri": "sqlite:////data/orasi/catalog.db",
            "warehouse": "file:///data/orasi/warehouse/",
            "wal": {"directory": "/wal"},
            "local_cache": {"directory": "/cache"},
        }
    )
    assert config.local_directories() == {
        "wal": "/wal",
        "cache": "/cache",
        "warehouse": "/data/orasi/warehouse",
        "catalog": "/data/orasi",
    }
    remote = LakeConfig.model_validate(
        {"catalog_uri": "postgresql+psycopg://db/orasi", "warehouse": "s3://bucket/prefix"}
    )
    assert remote.local_directories() == {}
