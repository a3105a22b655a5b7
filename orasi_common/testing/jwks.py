"""A JWT issuer for the `auth` extension's tests: keys made with ``cryptography`` (a test
dependency), published as a JWKS file, and tokens minted with PyJWT.

    issuer = Issuer()
    issuer.add("r1", "rsa"); issuer.add("e1", "ec")
    issuer.publish(path, "r1", "e1")                  # the JWKS file (replaced as a rotation does)
    token = issuer.token("r1", tenant="acme")         # RS256; valid for 10 minutes
    token = issuer.token("r1", exp=0, aud=None)       # a claim None: left out

Kinds: ``rsa`` (RS256), ``ec`` (P-256, ES256), ``ed`` (Ed25519, EdDSA).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
ALGORITHM = {"rsa": "RS256", "ec": "ES256", "ed": "EdDSA"}
ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "orasi"


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: PrivateKey, kid: str | None) -> dict[str, Any]:
    """The public half of ``key`` as a JWK (with ``kid`` when given)."""
    public = key.public_key()
    algorithm: Any = (
        jwt.algorithms.RSAAlgorithm
        if isinstance(public, rsa.RSAPublicKey)
        else jwt.algorithms.ECAlgorithm
        if isinstance(public, ec.EllipticCurvePublicKey)
        else jwt.algorithms.OKPAlgorithm
    )
    jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid} if kid is not None else jwk


class Issuer:
    """Signing keys by kid, the JWKS of some of them, and tokens signed with one."""

    def __init__(self, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.issuer, self.audience = issuer, audience
        self.keys: dict[str, tuple[PrivateKey, str]] = {}

    def add(self, kid: str, kind: str = "rsa") -> PrivateKey:
        key = new_key(kind)
        self.keys[kid] = (key, ALGORITHM[kind])
        return key

    def publish(self, path: Path, *kids: str, extra: tuple[dict[str, Any], ...] = ()) -> Path:
        """Write the JWKS of ``kids`` (plus ``extra`` entries) as a new file renamed over ``path``."""
        document = {"keys": [public_jwk(self.keys[kid][0], kid) for kid in kids] + list(extra)}
        staged = path.with_name(path.name + ".tmp")
        staged.write_text(json.dumps(document))
        os.replace(staged, path)
        return path

    def token(
        self, kid: str, algorithm: str | None = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A token signed with key ``kid`` (its header naming it, unless ``header`` is given): iss,
        aud, iat, sub, exp (10 minutes) and a unique jti unless ``claims`` says otherwise (None:
        left out). The jti makes every token distinct, as a real issuer's are: two tokens of equal
        claims issued in one second would otherwise be one string, and share an authenticator's
        cached verdict."""
        key, default_algorithm = self.keys[kid]
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "exp": now + 600,
            "iat": now,
            "sub": "test",
            "jti": uuid.uuid4().hex,
        }
        payload = {k: v for k, v in {**payload, **claims}.items() if v is not None}
        headers = {"kid": kid} if header is None else header
        return jwt.encode(payload, key, algorithm=algorithm or default_algorithm, headers=headers)
