"""The `auth` extension itself: it prepares the token table when the service starts. Receivers
and the query API that name it (``auth: {authenticator: <id>}``) check tokens with an
``Authenticator`` of its configuration."""

from __future__ import annotations

import asyncio

from orasi_common.extensions.auth.config import Config
from orasi_common.pipeline.component import Host, Settings


class AuthExtension:
    def __init__(self, settings: Settings, config: Config, host: Host) -> None:
        self.config = config
        self._logger = settings.logger

    async def start(self) -> None:
        if self.config.store is None:
            return  # JWTs only
        from orasi_common.extensions.auth.store import TokenStore  # lazily: see Authenticator.start

        store = TokenStore(self.config.store)
        try:
            applied = await asyncio.to_thread(store.migrate)
        finally:
            await asyncio.to_thread(store.close)
        if applied:
            self._logger.info("Token table migrations applied.", extra={"migrations": applied})

    async def shutdown(self) -> None:
        pass
