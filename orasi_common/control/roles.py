"""Region roles: which region is the primary and which the secondary, kept in etcd.

    /orasi/global/roles → {"primary": "us-east-1", "secondary": "us-west-2"}

(``global`` is therefore not a region name.) An `etcd` resolver that names a ``role`` follows
this key: the tertiary region's gateways export to the primary and fail over to the secondary,
as in the seed's diagram, and a change of roles moves their traffic within one watch event. While
the key is absent the resolver uses its configured ``region``.

``promote`` (``orasi dr promote --region R``) makes R the primary and the former primary the
secondary, in one compare-and-swap transaction on the key's revision (two promotions at once:
one wins, the other is retried on what the first wrote).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orasi_common.control.registration import ROOT

ROLES_KEY = f"{ROOT}/global/roles".encode()
Role = Literal["primary", "secondary"]
PROMOTE_ATTEMPTS = 5


class MalformedRoles(ValueError):
    """The roles key holds something else than a roles document."""


class PromotionConflict(Exception):
    """Others kept changing the roles while a promotion tried to write them."""


@dataclass(frozen=True)
class Roles:
    primary: str
    secondary: str | None = None

    def region(self, role: Role) -> str | None:
        return self.primary if role == "primary" else self.secondary

    def encode(self) -> bytes:
        return json.dumps({"primary": self.primary, "secondary": self.secondary}).encode()

    @classmethod
    def decode(cls, value: bytes) -> Roles:
        try:
            document = json.loads(value)
            primary, secondary = document["primary"], document.get("secondary")
        except (ValueError, TypeError, KeyError, AttributeError):
            raise MalformedRoles(f"{ROLES_KEY.decode()} is not a roles document: {value[:200]!r}") from None
        if (
            not isinstance(primary, str)
            or not primary
            or not (secondary is None or isinstance(secondary, str))
        ):
            raise MalformedRoles(
                f"{ROLES_KEY.decode()}: primary must be a region name, secondary one or null"
            )
        return cls(primary, secondary or None)

    def promoting(self, region: str) -> Roles:
        """These roles once ``region`` is the primary: the former primary becomes the secondary."""
        if region == self.primary:
            return self
        return Roles(region, self.primary)


async def promote(endpoints: Sequence[str], region: str, dry_run: bool = False) -> tuple[Roles | None, Roles]:
    """Make ``region`` the primary; the roles before and after. Without a roles key yet, ``region``
    becomes the primary with no secondary."""
    from orasi_common.control.settings_cli import Settings

    async def work(client: Any) -> tuple[Roles | None, Roles]:
        for _ in range(PROMOTE_ATTEMPTS):
            found = await client.get(ROLES_KEY)
            before = None if found is None else Roles.decode(bytes(found.value))
            after = Roles(region) if before is None else before.promoting(region)
            if dry_run or after == before:
                return before, after
            unchanged = (
                client.transactions.create(ROLES_KEY) == 0
                if found is None
                else client.transactions.mod(ROLES_KEY) == found.mod_revision
            )
            swapped, _ = await client.transaction(
                compare=[unchanged], success=[client.transactions.put(ROLES_KEY, after.encode())], failure=[]
            )
            if swapped:
                return before, after
        raise PromotionConflict(
            f"the roles changed {PROMOTE_ATTEMPTS} times while promoting {region}; try again"
        )

    result: tuple[Roles | None, Roles] = await Settings(endpoints).run(work)
    return result


def run_promote(endpoints: Sequence[str], region: str, dry_run: bool) -> int:
    """``orasi dr promote``: print the roles before and after (exit 1 when etcd or the key fails)."""
    import asyncio

    from orasi_common.control.fleet import EtcdUnreachable

    try:
        before, after = asyncio.run(promote(endpoints, region, dry_run))
    except (EtcdUnreachable, MalformedRoles, PromotionConflict) as error:
        print(f"orasi dr promote: {error}", file=sys.stderr)
        return 1

    def show(roles: Roles | None) -> str:
        return "none" if roles is None else f"primary {roles.primary}, secondary {roles.secondary or 'none'}"

    if after == before:
        print(f"{region} is the primary already ({show(before)})")
    else:
        print(f"{'would change' if dry_run else 'changed'} the roles from {show(before)} to {show(after)}")
    if not dry_run:
        from orasi_common.telemetry.audit import audit, local_user

        audit("dr.promote", actor=local_user(), region=region, before=show(before), after=show(after))
    return 0
