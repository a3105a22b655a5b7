"""Configuration of the `auth` extension, and how a receiver or the query API names it."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from orasi_common.config.model import ComponentConfig

SCOPES = ("ingest", "query", "admin")


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    token_id: str
    tenant: str
    scopes: frozenset[str]


class Config(ComponentConfig):
    store: str = Field(
        description="Database of the tokens: `postgresql://…` (the lake catalog's database) or "
        "`sqlite:///path` (`orasi up`); the table `auth_tokens` is created there.",
    )
    cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a verified (or refused) token's answer is reused without the database; "
        "a revoked token is refused at most this long after `orasi tokens revoke`.",
    )


class AuthSettings(ComponentConfig):
    """``auth:`` on a receiver or the query API: which `auth` extension checks its requests."""

    authenticator: str = Field(description="Id of the `auth` extension (listed in service.extensions).")


def extension_config(settings_extensions: object, auth: AuthSettings, where: str) -> Config:
    """The `auth` extension's config that ``auth`` names, from a component's ``Settings.extensions``;
    ValueError naming ``where`` when it is not a started `auth` extension."""
    found = getattr(settings_extensions, "get", lambda _key: None)(auth.authenticator)
    if not isinstance(found, Config):
        raise ValueError(
            f"{where}.auth.authenticator: {auth.authenticator!r} is not an `auth` extension listed "
            "in service.extensions"
        )
    return found
