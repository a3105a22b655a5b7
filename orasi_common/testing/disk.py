"""A disk that really fills up, for tests of what a full disk does (even for root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount``'s notation: ``4m``) mounted at ``mount_point`` (made here)
    until the block ends, then unmounted lazily. Mounting needs root (CAP_SYS_ADMIN); OSError
    when it fails."""
    mount_point.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        raise OSError(f"cannot mount a {size} tmpfs at {mount_point}: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


__all__ = ["tmpfs"]
