"""JWTs verified against a JWKS file per issuer: Kubernetes service-account tokens, or any issuer's.

    jwt:
      jwks_file: /etc/orasi/jwks/jwks.json     # {"keys": [...]}: the issuer's public keys
      issuer: https://kubernetes.default.svc.cluster.local
      audience: orasi
      tenant_claim: kubernetes.io/namespace    # a top-level claim, or a path of nested ones
      default_scopes: [ingest]                 # or scopes_claim: scope
      subjects:                                # scopes of their own for some subjects (sub)
        system:serviceaccount:orasi-gateway:orasi-gateway: {scopes: [forward]}
      leeway: 30                               # seconds of clock skew
      reload_interval: 30                      # seconds between checks of the file (0: never)

``jwt`` may also be a list of such sections, one per issuer (``JwtIssuers``): e.g. a bridge
that takes the gateways of other clusters, each cluster its own service-account issuer and keys.
Each section keeps its own keys, file checks, audience, tenant claim and scopes; nothing of one
applies to another's tokens.

A token ``header.payload.signature`` is checked in this order, and the first check that fails is
an Unauthenticated whose message says which (never the token itself):

    issuer     its ``iss``, read before any check, names a section's issuer (one section or many:
               the message names the ``iss`` it carries); only to pick that section, whose
               checks below then decide (``iss`` is verified again with the signature)
    kid        the header's key id names a key of the section's file (no kid: the file's only key)
    alg        one of ``algorithms``, and of the key's kind (RSA: RS*/PS*, EC: ES* of its curve,
               OKP: EdDSA; a key's own ``alg`` alone when it has one)
    signature  verifies with that key
    exp, nbf   ``exp`` is required; both within ``leeway``
    iss, aud   the section's issuer; an audience including the section's
    tenant     ``tenant_claim`` holds a tenant name (1 to 64 characters)

Its scopes are its subject's in its section's ``subjects`` when ``sub`` is listed there (how a
forwarding hop's service account gets ``forward`` while the apps' tokens, of the same issuer and
audience, do not), else the ``scopes_claim``'s, else ``default_scopes``.

``none`` and HMAC (HS*) never pass: the config refuses them, and symmetric (``oct``) keys of the
file are ignored, since a public JWKS would make an HMAC secret public.

Rotation: on a request at least ``reload_interval`` seconds after the last check (or
``UNKNOWN_KEY_CHECK`` seconds, for a token naming a key not loaded: new keys are taken as soon as
the file has them), the file's identity (inode, size, mtime) is compared, and a changed file that
parses replaces the keys; one that does not (e.g. written halfway) is logged and the loaded keys
are kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt

from orasi_common.errors import Unauthenticated
from orasi_common.extensions.auth.config import SCOPES, JwtConfig, Principal

_ALGORITHMS_OF_KEY = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "OKP": ("EdDSA",),
}
_ALGORITHMS_OF_CURVE = {"P-256": ("ES256",), "P-384": ("ES384",), "P-521": ("ES512",)}
TENANT_MAX = 64  # the token table's tenant column
UNKNOWN_KEY_CHECK = 1.0
"""Seconds after which a token naming an unknown key has the file checked at once."""
ISSUER_SHOWN = 100
"""Characters of an untrusted token's ``iss`` a refusal quotes (the claim is the sender's to fill)."""


class _UnknownKey(Unauthenticated):
    """A token names a key the file does not hold (yet): a reason to look at the file again."""


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token has a JWT's shape (three dot-separated parts); Orasi's own tokens
    (``orasi_<id>_<secret>``, URL-safe base64) never have a dot."""
    return token.count(".") == 2


@dataclass(frozen=True)
class _Key:
    key: Any  # a `cryptography` public key
    algorithms: tuple[str, ...]


def parse_jwks(text: str, where: str) -> dict[str | None, _Key]:
    """The usable public keys of a JWKS document by ``kid``; ValueError naming ``where`` when it is
    not a JWKS or holds no usable key."""
    try:
        document = json.loads(text)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ValueError(f'{where} is not a JWKS (JSON with a "keys" list)') from None
    keys: dict[str | None, _Key] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") == "oct" or entry.get("use", "sig") != "sig":
            continue
        kind = _ALGORITHMS_OF_KEY.get(
            entry.get("kty", ""), _ALGORITHMS_OF_CURVE.get(entry.get("crv", ""), ())
        )
        if "alg" in entry:
            kind = tuple(a for a in kind if a == entry["alg"])
        if not kind:
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=kind[0]).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError):
            continue
        if hasattr(key, "private_bytes"):  # a private JWK published by mistake: its public half
            key = key.public_key()
        keys[entry.get("kid")] = _Key(key, kind)
    if not keys:
        raise ValueError(f"{where} holds no usable public key (RSA, EC P-256/384/521 or OKP Ed25519)")
    return keys


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """The claim ``name``: a top-level one, else a ``/``-separated path of nested ones; None."""
    if name in claims:
        return claims[name]
    found: Any = claims
    for part in name.split("/"):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    return found


class JwtVerifier:
    """The checks of one ``JwtConfig`` (see the module docstring), with its file's keys."""

    def __init__(self, config: JwtConfig, logger: logging.Logger | None = None) -> None:
        self.config = config
        self._logger = logger or logging.getLogger("orasi.auth")
        self._keys: dict[str | None, _Key] = {}
        self._identity: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        self.reloads = 0

    def _stat(self) -> tuple[int, int, int]:
        stat = os.stat(self.config.jwks_file)
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def load(self) -> None:
        """Read the file; ValueError saying why it cannot serve (blocking: ``start`` runs it in a
        thread)."""
        try:
            identity = self._stat()
            text = Path(self.config.jwks_file).read_text()
        except OSError as error:
            raise ValueError(f"cannot read the JWKS file: {error}") from None
        self._keys, self._identity = parse_jwks(text, self.config.jwks_file), identity

    def reload_if_changed(self) -> bool:
        """Load the file again if it changed since it was loaded; whether new keys were loaded."""
        try:
            changed = self._stat() != self._identity
            if changed:
                self.load()
        except ValueError as error:
            self._logger.warning(
                "The JWKS file does not load; keeping its keys.", extra={"error": str(error)}
            )
            return False
        except OSError as error:
            self._logger.warning("The JWKS file is missing; keeping its keys.", extra={"error": str(error)})
            return False
        if changed:
            self.reloads += 1
            self._logger.info(
                "JWKS reloaded.", extra={"jwks_file": self.config.jwks_file, "keys": len(self._keys)}
            )
        return changed

    async def start(self) -> None:
        await asyncio.to_thread(self.load)
        self._checked_at = time.monotonic()

    def _due(self, seconds: float) -> bool:
        return self.config.reload_interval > 0 and time.monotonic() - self._checked_at >= seconds

    async def _check(self) -> bool:
        self._checked_at = time.monotonic()  # before the await: one check, however many requests
        return await asyncio.to_thread(self.reload_if_changed)

    async def verify(self, token: str) -> tuple[Principal, float]:
        """The principal of a valid ``token`` and the epoch second it expires; Unauthenticated
        saying which check failed."""
        if self._due(self.config.reload_interval):
            await self._check()
        try:
            claims = self._claims(token)
        except _UnknownKey:
            if not (self._due(min(self.config.reload_interval, UNKNOWN_KEY_CHECK)) and await self._check()):
                raise
            claims = self._claims(token)
        tenant = _claim(claims, self.config.tenant_claim)
        if tenant is None:
            raise Unauthenticated(f"the JWT has no {self.config.tenant_claim!r} claim naming its tenant")
        if not isinstance(tenant, str) or not 0 < len(tenant) <= TENANT_MAX:
            raise Unauthenticated(
                f"the JWT's {self.config.tenant_claim!r} claim is not a tenant name "
                f"(a string of 1 to {TENANT_MAX} characters)"
            )
        subject = claims.get("sub")  # a string when present: PyJWT refuses any other
        grant = self.config.subjects.get(subject) if subject is not None else None
        if grant is not None:  # a subject of its own scopes (a forwarding hop's service account)
            scopes: frozenset[str] = frozenset(grant.scopes)
        elif self.config.scopes_claim is None:
            scopes = frozenset(self.config.default_scopes)
        else:
            held = _claim(claims, self.config.scopes_claim)
            words = held.split() if isinstance(held, str) else held if isinstance(held, list) else []
            scopes = frozenset(w for w in words if w in SCOPES)
        return Principal(f"jwt:{subject or claims.get('jti') or '?'}", tenant, scopes), float(claims["exp"])

    def _claims(self, token: str) -> dict[str, Any]:
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:  # PyJWT's messages name the part, never hold the token
            raise Unauthenticated(f"the bearer token is not a well-formed JWT ({error})") from None
        kid = header.get("kid")
        key = (
            self._keys.get(kid)
            if kid is not None or len(self._keys) != 1
            else next(iter(self._keys.values()))
        )
        if key is None and kid is None:
            raise Unauthenticated(
                f"the JWT names no key id (kid) and the JWKS file {config.jwks_file} has several keys"
            )
        if key is None:
            raise _UnknownKey(
                f"the JWT's key id (kid) is not a key of the JWKS file {config.jwks_file} "
                "(signed by another issuer, or by a key not published yet)"
            )
        algorithm = header.get("alg")
        if algorithm not in config.algorithms or algorithm not in key.algorithms:
            fits = " or ".join(a for a in key.algorithms if a in config.algorithms) or "another key"
            raise Unauthenticated(f"the JWT's algorithm (alg) is not accepted for its key; use {fits}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": ["exp"]},
            )
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the JWT's signature does not verify with its key") from None
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                f"the JWT has expired (exp, beyond {config.leeway:g} s of leeway)"
            ) from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the JWT is not valid yet (nbf or iat is in the future)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the JWT's issuer (iss) is not {config.issuer!r}") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the JWT's audience (aud) does not include {config.audience!r}") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the JWT has no {error.claim!r} claim") from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"the JWT is not valid: {error}") from None
        return claims


class JwtIssuers:
    """The sections of ``jwt``, one ``JwtVerifier`` each: a token's ``iss`` picks the section that
    checks it (see the module docstring). The ``iss`` is read unverified, for that choice alone: a
    token signed with issuer A's key but naming issuer B is checked with B's keys and refused (its
    kid is not in B's file, or its signature does not verify with B's key of that kid)."""

    def __init__(self, configs: Sequence[JwtConfig], logger: logging.Logger | None = None) -> None:
        self.verifiers = {config.issuer: JwtVerifier(config, logger) for config in configs}
        self._trusted = " or ".join(repr(issuer) for issuer in self.verifiers)

    async def start(self) -> None:
        for verifier in self.verifiers.values():
            await verifier.start()

    def select(self, token: str) -> JwtVerifier:
        """The verifier of the token's issuer; Unauthenticated naming the ``iss`` when none is."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:  # PyJWT's messages name the part, never hold the token
            raise Unauthenticated(f"the bearer token is not a well-formed JWT ({error})") from None
        issuer = claims.get("iss")
        if issuer is None:
            raise Unauthenticated("the JWT has no 'iss' claim")
        found = self.verifiers.get(issuer) if isinstance(issuer, str) else None
        if found is None:
            shown = repr(issuer)
            if len(shown) > ISSUER_SHOWN:
                shown = shown[:ISSUER_SHOWN] + "…"
            raise Unauthenticated(f"the JWT's issuer (iss) is not {self._trusted} (it names {shown})")
        return found

    async def verify(self, token: str) -> tuple[Principal, float]:
        """``JwtVerifier.verify`` by the token's issuer's section; with several issuers, the
        principal's id also names the issuer (one cluster's ``sub`` may be another's)."""
        verifier = self.select(token)
        principal, expires = await verifier.verify(token)
        if len(self.verifiers) > 1:
            principal = replace(principal, token_id=f"{principal.token_id}@{verifier.config.issuer}")
        return principal, expires
