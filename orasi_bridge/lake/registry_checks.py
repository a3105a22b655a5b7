"""The lake writer's use of the schema registry (``LakeWriter.use_registry``): a tenant's validation
policies loaded before its first batch is buffered, an ``Inspection`` for each conversion, and the
attribute keys and types the conversions saw handed to the registry's store at each flush."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING

from orasi_common.errors import OrasiError
from orasi_common.pipeline.component import Settings

if TYPE_CHECKING:  # the registry imports the lake's schema, whose package imports the writer
    from orasi_bridge.registry.ingest import Inspection, Observed
    from orasi_bridge.registry.registry import Registry

POLICY_RETRY = 5.0
"""Seconds before loading a tenant's validation policies is tried again after a failure."""


class RegistryChecks:
    """Nothing until ``use`` names a registry; then ingest is checked against its policies."""

    def __init__(self, settings: Settings) -> None:
        self._logger = settings.logger
        self._violations = settings.metrics.schema_violations
        self._registry: Registry | None = None
        self._observed: dict[str, Observed] = defaultdict(set)  # per tenant, since the last flush
        self._warm_after: dict[str, float] = {}  # per tenant: when loading its policies may be retried

    def use(self, registry: Registry) -> None:
        self._registry = registry

    def inspection(self) -> Inspection | None:
        """A conversion's check against the policies (None: no registry); ``seen`` takes it back."""
        from orasi_bridge.registry.ingest import Inspection  # see TYPE_CHECKING above

        return None if self._registry is None else Inspection(self._registry, self._violations)

    def seen(self, inspect: Inspection | None) -> None:
        """Keep what a conversion's ``inspect`` saw, for ``record_observed``."""
        if inspect is not None:
            for tenant, seen in inspect.seen.items():
                self._observed[tenant] |= seen

    async def load_policies(self, tenant: str) -> None:
        """Before a tenant's first batch is buffered: its validation policies, so that they apply
        from the first batch on (a store that does not answer is tried again after a while)."""
        registry = self._registry
        if registry is None or registry.policies(tenant) is not None:
            return
        if time.monotonic() < self._warm_after.get(tenant, 0):
            return
        try:
            await registry.warm(tenant)
        except OrasiError as error:
            self._warm_after[tenant] = time.monotonic() + POLICY_RETRY
            self._logger.warning(
                "The schema registry's policies could not be loaded; ingest is not validated until they are.",
                extra={"tenant": tenant, "error": error.message, "retry_in": POLICY_RETRY},
            )

    async def record_observed(self) -> None:
        """Hand the keys and types seen since the last call to the registry's store."""
        if self._registry is None or not self._observed:
            return
        observed, self._observed = self._observed, defaultdict(set)
        for tenant, seen in observed.items():
            try:
                await self._registry.observe(tenant, seen)
            except OrasiError as error:  # seen again later, and recorded then
                self._logger.warning(
                    "Recording the attribute types seen failed.",
                    extra={"tenant": tenant, "error": error.message},
                )
