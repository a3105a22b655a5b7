"""Batch ids claimed across lakes: a batch is committed in one region's lake, never in two.

Within one lake the batch-id rule is the Iceberg snapshot summaries' (``writer``, ``committed``).
Across regions it is not enough: a gateway whose primary bridge logged a part and died before
acknowledging it sends the part, under the same id, to the failover region's bridge, which
commits it; the primary replays its log when it comes back and would commit it too. (The same
happens when a slow primary answers after the gateway's timeout.)

Every lake of the federation therefore shares one small table, ``orasi_batch_claims`` (batch id
→ the lake that claimed it, when), in a database every bridge reaches (the catalogs' PostgreSQL;
a SQLite file for `orasi up --regions`, whose bridges share one machine)::

    flush of table T:  ids of the buffered batches
        └─ claim(ids): INSERT … ON CONFLICT DO NOTHING (this lake's name), then read the owners
             ├─ owned by this lake  → committed here (the Iceberg rule settles writers of this lake)
             └─ owned by another    → left out of the commit, their log records acknowledged

The guarantee: a batch id is committed in at most one lake, the first whose flush claimed it.
The claim is taken before the commit and kept if the commit fails or the bridge dies, so the
claiming lake commits the batch at its next flush or when it replays its log; the other lake
leaves its copy out meanwhile. What a lake claimed and lost with its disk is lost as its log is
(ARCHITECTURE §3: acknowledged means on that disk). Claims older than ``retention`` seconds are
deleted (a copy can only come while an upstream or a log still holds the batch: seconds to
minutes; the lake's ``dedup_window`` is the same bound within a lake).

The cost: one statement pair per table per flush (not per batch), in the flush's thread. While
the database does not answer, flushes fail and are retried (rows stay buffered, the log keeps
them), as when the catalog does not answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.dialects import postgresql, sqlite

from orasi_common.config.model import ComponentConfig

CLAIMS = sa.Table(
    "orasi_batch_claims",
    sa.MetaData(),
    sa.Column("batch_id", sa.String(128), primary_key=True),
    sa.Column("lake", sa.String(512), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False, index=True),
)
CHUNK = 500
"""Ids per statement (bound parameters stay well under every driver's limit)."""
PRUNE_EVERY = 100
"""Claims (calls) between two deletions of expired claims."""


class GlobalDedupConfig(ComponentConfig):
    store: str = Field(
        description="SQLAlchemy URL of the database every region's bridges share: "
        "postgresql+psycopg://… or sqlite:///… (one machine)."
    )
    lake: str = Field(
        default="",
        description="This lake's name in the claims (default: its warehouse URL, one per lake).",
    )
    retention: float = Field(default=3600.0, gt=0, description="Seconds a claim is kept.")


class GlobalDedup:
    """The claims of one lake (blocking calls: run them in a thread)."""

    def __init__(self, config: GlobalDedupConfig, lake: str) -> None:
        self.lake = config.lake or lake
        self._retention = config.retention
        self._engine = sa.create_engine(config.store, pool_pre_ping=True)
        self._dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        self._created = False
        self._calls = 0

    def close(self) -> None:
        self._engine.dispose()

    def _create(self) -> None:
        try:
            with self._engine.begin() as connection:
                CLAIMS.create(connection, checkfirst=True)
        except sa.exc.DBAPIError:  # another bridge created it at the same moment
            if not sa.inspect(self._engine).has_table(CLAIMS.name):
                raise
        self._created = True

    def claimed_elsewhere(self, batch_ids: Sequence[str]) -> set[str]:
        """Claim ``batch_ids`` for this lake; the ids that another lake claimed first."""
        if not batch_ids:
            return set()
        now = time.time()
        others: set[str] = set()
        if not self._created:
            self._create()
        with self._engine.begin() as connection:
            for start in range(0, len(batch_ids), CHUNK):
                chunk = list(dict.fromkeys(batch_ids[start : start + CHUNK]))
                rows = [{"batch_id": i, "lake": self.lake, "claimed_at": now} for i in chunk]
                connection.execute(self._dialect.insert(CLAIMS).values(rows).on_conflict_do_nothing())
                owners = connection.execute(
                    sa.select(CLAIMS.c.batch_id, CLAIMS.c.lake).where(CLAIMS.c.batch_id.in_(chunk))
                )
                others.update(batch_id for batch_id, lake in owners if lake != self.lake)
            self._calls += 1
            if self._calls % PRUNE_EVERY == 1:
                connection.execute(sa.delete(CLAIMS).where(CLAIMS.c.claimed_at < now - self._retention))
        return others


__all__ = ["CLAIMS", "GlobalDedup", "GlobalDedupConfig"]
