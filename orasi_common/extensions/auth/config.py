"""Configuration of the `auth` extension, and how a receiver or the query API names it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from orasi_common.config.model import ComponentConfig

SCOPES = ("ingest", "query", "admin", "forward")
"""What a token may do: ``ingest`` as its tenant, ``query`` its tenant's data, ``admin`` change its
tenant's registry, ``forward`` ingest as the tenant each request names (a forwarding hop: an agent
or gateway carrying many tenants' batches; ``Authenticator.tenant``)."""
Scope = Literal["ingest", "query", "admin", "forward"]
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""The JWT algorithms verified with a JWKS file's public keys (never ``none`` nor HMAC's HS*)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    token_id: str
    tenant: str
    scopes: frozenset[str]


class SubjectGrant(ComponentConfig):
    """One entry of ``jwt.subjects``: the scopes of the tokens of one subject (``sub``)."""

    scopes: tuple[Scope, ...] = Field(
        min_length=1,
        description="The subject's scopes, in place of `scopes_claim` or `default_scopes` (e.g. "
        "`[forward]` for a gateway's service account).",
    )


class JwtConfig(ComponentConfig):
    """One issuer of ``jwt:`` of the `auth` extension: its JWTs verified against its JWKS file
    (``jwks.py``)."""

    jwks_file: str = Field(
        description='JSON Web Key Set of the issuer\'s public keys (`{"keys": [...]}`: RSA, EC or '
        "OKP keys); read again when it changes, as keys rotate.",
    )
    issuer: str = Field(description="The `iss` every token must carry (a cluster's service-account issuer).")
    audience: str = Field(description="The `aud` every token must include (e.g. `orasi`).")
    tenant_claim: str = Field(
        default="tenant",
        description="Claim holding the token's tenant: a top-level claim, or a `/`-separated path "
        "of nested ones (`kubernetes.io/namespace` in a service-account token).",
    )
    scopes_claim: str | None = Field(
        default=None,
        description="Claim holding the token's scopes (a space-separated string, as OAuth's `scope`, "
        "or a list; others than " + "/".join(SCOPES) + " are ignored); unset: `default_scopes`.",
    )
    default_scopes: tuple[Scope, ...] = Field(
        default=("ingest",),
        min_length=1,
        description="Scopes of every token when `scopes_claim` is unset (never `forward`: grant "
        "that to the forwarding hops' subjects under `subjects`).",
    )
    subjects: dict[str, SubjectGrant] = Field(
        default_factory=dict,
        description="Scopes by subject (the `sub` claim, e.g. "
        "`system:serviceaccount:orasi-gateway:orasi-gateway`), in place of `scopes_claim` or "
        "`default_scopes` for that subject's tokens; other subjects keep those.",
    )
    algorithms: tuple[str, ...] = Field(
        default=ALGORITHMS,
        min_length=1,
        description="Signature algorithms accepted (each must also fit the key): "
        + ", ".join(ALGORITHMS)
        + ".",
    )
    leeway: float = Field(
        default=30.0, ge=0, le=600, description="Seconds of clock skew allowed on `exp`, `nbf` and `iat`."
    )
    reload_interval: float = Field(
        default=30.0,
        ge=0,
        description="Seconds between checks of `jwks_file` for new keys, made on a request (0: load once).",
    )

    @field_validator("algorithms")
    @classmethod
    def _public_key_algorithms(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        for name in algorithms:
            if name not in ALGORITHMS:
                why = (
                    "a JWKS file holds public keys, which HMAC would take as a shared secret"
                    if name.upper().startswith("HS")
                    else "an unsigned token proves nothing"
                    if name.lower() == "none"
                    else "it is not a public-key signature algorithm"
                )
                raise ValueError(f"{name!r} is refused: {why}; use some of {', '.join(ALGORITHMS)}")
        return algorithms

    @field_validator("default_scopes")
    @classmethod
    def _no_default_forwarding(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        if "forward" in scopes:
            raise ValueError(
                "forward is refused here: every token could then write as any tenant; grant it to "
                "the forwarding hops' subjects (jwt.subjects: {SUB: {scopes: [forward]}})"
            )
        return scopes

    @model_validator(mode="after")
    def _scopes_from_one_place(self) -> JwtConfig:
        if self.scopes_claim is not None and "default_scopes" in self.model_fields_set:
            raise ValueError("set scopes_claim or default_scopes, not both")
        return self


class Config(ComponentConfig):
    store: str | None = Field(
        default=None,
        description="Database of the tokens: `postgresql://…` (the lake catalog's database) or "
        "`sqlite:///path` (`orasi up`); the table `auth_tokens` is created there. Unset: JWTs only.",
    )
    jwt: tuple[JwtConfig, ...] | None = Field(
        default=None,
        description="Also accept JWTs verified against a JWKS file (README, Security): one issuer's "
        "section, or a list of them, one per issuer (e.g. the other clusters' service-account "
        "issuers, whose gateways forward here); a token's `iss` picks its issuer's section.",
    )
    cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a verified (or refused) token's answer is reused without the database; "
        "a revoked token is refused at most this long after `orasi tokens revoke`.",
    )

    @field_validator("jwt", mode="before")
    @classmethod
    def _one_issuer_or_a_list(cls, jwt: object) -> object:
        """One issuer's mapping is a list of one: the code sees a tuple of issuers either way."""
        if isinstance(jwt, Mapping | JwtConfig):
            return [jwt]
        if jwt is not None and not isinstance(jwt, list | tuple):
            raise ValueError("jwt is one issuer's section (a mapping) or a list of them, one per issuer")
        return jwt

    @model_validator(mode="after")
    def _some_credential(self) -> Config:
        if self.store is None and self.jwt is None:
            raise ValueError("set store (bearer tokens), jwt (JWTs), or both")
        if self.jwt == ():
            raise ValueError("jwt: an empty list trusts no issuer; list the issuers, or leave jwt out")
        issuers = [section.issuer for section in self.jwt or ()]
        repeated = sorted({issuer for issuer in issuers if issuers.count(issuer) > 1})
        if repeated:
            raise ValueError(
                f"jwt: the issuer {repeated[0]!r} has two sections; a token's iss picks one, so give "
                "each issuer one section (its keys in one JWKS file, its subjects in one map)"
            )
        return self


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
