"""The registry's configuration section, inside the bridge's query API section."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orasi_bridge.api.config import Config
from orasi_bridge.registry.config import RegistryConfig
from orasi_bridge.registry.store import store_uri


def test_defaults_store_in_the_catalog_database_without_redis() -> None:
    config = Config.model_validate({}).registry
    assert (config.enabled, config.store, config.redis, config.compatibility) == (
        True,
        None,
        None,
        "BACKWARD",
    )


def test_levels_are_normalised_and_unknown_ones_refused_naming_them() -> None:
    assert RegistryConfig(compatibility="full_transitive").compatibility == "FULL_TRANSITIVE"
    with pytest.raises(ValidationError, match="'SIDEWAYS' is not a compatibility level"):
        RegistryConfig(compatibility="SIDEWAYS")


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"store": "mysql://db/x"}, "postgresql:// or sqlite:///"),
        ({"redis": "http://redis:6379"}, "redis://"),
        ({"cache": "redis://x"}, "cache"),
        ({"max_request_bytes": 0}, "greater than 0"),
    ],
)
def test_bad_sections_are_refused(section: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        Config.model_validate({"registry": section})


def test_the_catalog_uri_names_the_registry_database() -> None:
    assert store_uri("postgresql+psycopg://orasi@db:5432/lake") == "postgresql://orasi@db:5432/lake"
    assert store_uri("sqlite:////data/catalog.db") == "sqlite:////data/catalog.db"
