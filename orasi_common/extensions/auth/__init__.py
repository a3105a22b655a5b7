"""The `auth` extension: bearer tokens mapped to a tenant and scopes (README, Security)."""

from orasi_common.extensions.auth.authenticator import Authenticator, bearer
from orasi_common.extensions.auth.config import SCOPES, AuthSettings, Config, Principal, extension_config
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
    "Principal",
    "bearer",
    "extension_config",
]
