"""Where the shared reference data is: ``shared/`` (conformance examples, the telemetry corpus).

``$ORASI_SHARED`` when set, else the ``shared/`` beside the repository (as CI lays it out), else
``/work/shared`` (a developer's machine). Tests that read it fail, not skip, when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """The first of the candidate ``shared/`` folders that exists (the first candidate if none)."""
    candidates = [Path(os.environ["ORASI_SHARED"])] if os.environ.get("ORASI_SHARED") else []
    candidates += [_REPOSITORY.parent / "shared", Path("/work/shared")]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def shared_path(*parts: str) -> Path:
    """``shared/<parts>``; FileNotFoundError naming where it was looked for when it is missing."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the shared reference data (shared/) is looked for in $ORASI_SHARED, "
            f"beside the repository ({_REPOSITORY.parent / 'shared'}) and in /work/shared"
        )
    return path


__all__ = ["shared_dir", "shared_path"]
