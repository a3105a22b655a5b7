"""Who may send to a push receiver, and how much: the `auth` and `ratelimit` extensions its requests
are checked by (``ingest.Ingest``), one config block for every receiver that takes requests."""

from __future__ import annotations

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.extensions.auth import AuthSettings
from orasi_common.extensions.ratelimit import RateLimitSettings


class IngestAccess(ComponentConfig):
    auth: AuthSettings | None = Field(
        default=None,
        description="Require a bearer token (scope `ingest`) checked by this `auth` extension; the "
        "request's tenant is then the token's (README, Security).",
    )
    rate_limit: RateLimitSettings | None = Field(
        default=None,
        description="Limit each tenant's items/s and bytes/s with this `ratelimit` extension; over "
        "the limit: RESOURCE_EXHAUSTED / 429 with a retry delay (README, Security).",
    )
