"""The `ratelimit` extension itself holds only its configuration: receivers and the query API
that name it (``rate_limit: {limiter: <id>}``) limit their requests with a ``RateLimiter`` of it.
Starting it checks nothing: Redis being unreachable is never a reason not to run."""

from __future__ import annotations

from orasi_common.extensions.ratelimit.config import Config
from orasi_common.pipeline.component import Host, Settings


class RateLimitExtension:
    def __init__(self, settings: Settings, config: Config, host: Host) -> None:
        self.config = config

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
