"""The `auth` extension: bearer tokens mapped to a tenant and scopes (README, Security)."""

from orasi_common.extensions.auth.authenticator import Authenticator, authenticator, bearer
from orasi_common.extensions.auth.config import (
    SCOPES,
    AuthSettings,
    Config,
    JwtConfig,
    Principal,
    extension_config,
)
from orasi_common.extensions.auth.extension import AuthExtension
from orasi_common.pipeline.component import ExtensionFactory

FACTORY = ExtensionFactory("auth", Config, AuthExtension)

__all__ = [
    "FACTORY",
    "SCOPES",
    "AuthExtension",
    "AuthSettings",
    "Authenticator",
    "Config",
    "JwtConfig",
    "Principal",
    "authenticator",
    "bearer",
    "extension_config",
]
