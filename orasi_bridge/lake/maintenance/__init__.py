"""Lake maintenance: jobs that keep the lake's tables fast and bounded, on a schedule and by command.

- ``compaction``: a partition's small files merged into files near ``target_file_mib``, sorted and
  indexed as the writer writes its files, in one snapshot per partition.
- ``expiry``: snapshots past ``keep_age`` and ``keep_snapshots`` (never within the lake's
  ``dedup_window``) expired, then orphan files older than ``orphan_age`` removed.
- ``retention``: whole day partitions past their tenant's limit deleted.
- ``tables``: what the jobs share (the lake's tables, live files by partition, ``replace_files``:
  the one commit shape, retried on conflicts with the writers).
- ``jobs``: the jobs by action name; ``scheduler``: the lake exporter runs them on one bridge per
  region (an election, or a lock in this process); `orasi lake compact|expire|retention` runs one.

Only the configuration is imported here: ``lake.config`` imports this package, and the jobs import
the lake's catalog, which imports ``lake.config``.
"""

from orasi_bridge.lake.maintenance.config import MaintenanceConfig, RetentionConfig

__all__ = ["MaintenanceConfig", "RetentionConfig"]
