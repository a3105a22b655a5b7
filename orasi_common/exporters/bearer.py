"""An exporter's bearer token, read from a file that may be replaced at any time.

    exporters:
      otap:
        endpoint: bridge:4317
        auth:
          bearer_token_file: /var/run/secrets/tokens/orasi   # a projected service-account token

Every call (OTLP/gRPC, OTLP/HTTP) and every OTAP batch carries ``Authorization: Bearer <the file's
content>``. The file is checked at most every ``reload_interval`` seconds (its inode, size and
modification time, which a kubelet's atomic symlink swap or a rewrite changes) and read again
when it changed, so a rotated token is sent from the next check on, with no restart and no batch
lost. A file that cannot be read or is empty keeps the last token (one warning); with no token
at all a batch is refused retryably, so the queue keeps it.

When the peer refuses the token (UNAUTHENTICATED / 401), the refusal is retryable too, and the
file is checked again before the next attempt: a token that expired before its replacement was
read costs a retry, not the batch. (A token that stays refused holds the queue, which is what
losing no acknowledged data means; the exporter's failure metrics and logs show it.)

The token is never logged, nor shown by ``repr``; only the file's path is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.errors import Unauthenticated, Unavailable

MAX_TOKEN_BYTES = 64 * 1024
"""A token file larger than this is refused (a JWT is a few kilobytes)."""


class BearerAuthConfig(ComponentConfig):
    """``auth:`` of an exporter: the bearer token it sends (after the Collector's bearertokenauth)."""

    bearer_token_file: str = Field(
        description="File holding the token (e.g. a projected Kubernetes service-account token); "
        "read again when it changes, as such tokens rotate."
    )
    reload_interval: float = Field(
        default=1.0, ge=0, description="Seconds between checks of the file for a new token (0: every call)."
    )


def check_one_authorization(auth: BearerAuthConfig | None, headers: dict[str, str]) -> None:
    """An exporter's config validator: ValueError when ``auth`` and its static ``headers`` would
    both set the Authorization header."""
    if auth is not None and any(key.lower() == "authorization" for key in headers):
        raise ValueError("set auth.bearer_token_file or an authorization header, not both")


class BearerToken:
    """The current ``Authorization`` value of one ``BearerAuthConfig`` (see the module docstring)."""

    def __init__(self, config: BearerAuthConfig, logger: logging.Logger | None = None) -> None:
        self.config = config
        self._logger = logger or logging.getLogger("orasi.exporter")
        self._value: str | None = None
        self._identity: tuple[int, int, int] | None = None
        self._checked_at = -float("inf")
        self._problem: str | None = None
        self.reloads = 0

    def __repr__(self) -> str:
        return f"BearerToken(file={self.config.bearer_token_file!r})"

    @classmethod
    def of(cls, config: BearerAuthConfig | None, logger: logging.Logger | None = None) -> BearerToken | None:
        return None if config is None else cls(config, logger)

    async def authorization(self) -> str:
        """``Bearer <token>``: the file's token as of the last check (checked when one is due);
        Unavailable (retryable) while no token could ever be read."""
        now = time.monotonic()
        if self._value is None or now - self._checked_at >= self.config.reload_interval:
            self._checked_at = now  # before the await: one check, however many calls
            await asyncio.to_thread(self._reload)
        if self._value is None:
            raise Unavailable(
                f"no bearer token: {self._problem or 'the token file was not read yet'}",
                retry_after=max(self.config.reload_interval, 0.1),
            )
        return self._value

    def refused(self, error: Unauthenticated) -> Unavailable:
        """The retryable error to raise for the peer's refusal of the token; the file is checked
        again before the next call."""
        self._checked_at = -float("inf")
        return Unavailable(
            f"{error.message} (the token of {self.config.bearer_token_file} is read again and the "
            "batch retried)",
            retry_after=max(self.config.reload_interval, 0.1),
        )

    def _reload(self) -> None:
        """Read the file if it changed since it was read (blocking: run in a thread)."""
        path = self.config.bearer_token_file
        try:
            stat = os.stat(path)
            identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if identity == self._identity:
                return
            if stat.st_size > MAX_TOKEN_BYTES:
                raise ValueError(f"it holds more than {MAX_TOKEN_BYTES} bytes")
            with open(path, "rb") as handle:
                token = handle.read(MAX_TOKEN_BYTES + 1).decode("ascii").strip()
            if not token or any(c.isspace() for c in token):
                raise ValueError("it is empty or holds more than one word")
        except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
            problem = f"the bearer token file {path} cannot be used: {error}"
            if problem != self._problem:
                self._logger.warning(
                    "The bearer token file cannot be used; keeping the last token."
                    if self._value is not None
                    else "The bearer token file cannot be used; batches wait for a token.",
                    extra={"bearer_token_file": path, "error": str(error)},
                )
            self._problem = problem
            return
        changed = self._value is not None and self._value != f"Bearer {token}"
        self._value, self._identity, self._problem = f"Bearer {token}", identity, None
        if changed:
            self.reloads += 1
            self._logger.info("Bearer token reloaded.", extra={"bearer_token_file": path})


__all__ = ["MAX_TOKEN_BYTES", "BearerAuthConfig", "BearerToken", "check_one_authorization"]
