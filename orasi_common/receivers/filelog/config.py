"""Configuration of the `filelog` receiver."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.pdata import DEFAULT_TENANT


def _compiles(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"{value!r} is not a regular expression: {error}") from None
    return value


class Multiline(ComponentConfig):
    line_start_pattern: str = Field(
        description="A regex matching the first line of a record; lines that do not match are joined "
        "to the record before them."
    )

    _valid = field_validator("line_start_pattern")(_compiles)


class Severity(ComponentConfig):
    regex: str | None = Field(
        default=None,
        description="A regex searched in each message whose named group `severity` names the "
        "severity (trace, debug, info, warn/warning, error, fatal, ...).",
    )
    json_field: str | None = Field(
        default=None, description="A field of JSON messages naming the severity (tried before `regex`)."
    )

    @field_validator("regex")
    @classmethod
    def _has_group(cls, value: str | None) -> str | None:
        if _compiles(value) is not None and "severity" not in re.compile(value or "").groupindex:
            raise ValueError("the regex needs a named group `severity`, e.g. (?P<severity>INFO|WARN|ERROR)")
        return value


class Config(ComponentConfig):
    include: list[str] = Field(
        min_length=1, description="Glob patterns of the files to read, e.g. /var/log/pods/*/*/*.log."
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of files not to read.")
    start_at: Literal["beginning", "end"] = Field(
        default="end",
        description="Where to start a file found at the first scan that has no checkpoint; files that "
        "appear later are read from their beginning.",
    )
    format: Literal["auto", "cri", "docker", "none"] = Field(
        default="auto",
        description="cri (CRI-O/containerd `time stream P|F message`), docker (json-file), none (the line is "
        "the message), or auto: cri or docker from each file's first line.",
    )
    multiline: Multiline | None = Field(
        default=None, description="Join lines into records by a start pattern."
    )
    severity: Severity | None = Field(default=None, description="Where each record's severity is read.")
    kubernetes_metadata: bool = Field(
        default=True,
        description="Resource attributes k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.container.name, "
        "k8s.container.restart_count from paths /var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log.",
    )
    checkpoint_directory: str | None = Field(
        default=None,
        description="Where each file's committed offset is kept (a file of two slots per receiver, "
        "<receiver>.checkpoint), so that a restart neither loses nor repeats lines; unset: offsets "
        "live in memory only.",
    )
    poll_interval: float = Field(default=0.2, gt=0, description="Seconds between two scans of the files.")
    force_flush_period: float = Field(
        default=0.5,
        ge=0,
        description="Seconds a file stays idle before its last record (an open part, a multiline record, a "
        "line without its newline) is sent as it is.",
    )
    max_open_files: int = Field(
        default=256, ge=1, description="Files open at once; more wait for a later scan (oldest first)."
    )
    max_line_bytes: int = Field(
        default=64 * 1024,
        ge=256,
        description="Longer lines are cut to this length (at a UTF-8 character's start), counted (too_long).",
    )
    max_batch_bytes: int = Field(
        default=1024 * 1024,
        ge=4096,
        description="Bytes of one file read into one batch (a block); a batch is acknowledged before the "
        "file's offset moves past it.",
    )
    tenant: str = Field(default=DEFAULT_TENANT, description="The tenant of every record read here.")

    @model_validator(mode="after")
    def _block_holds_a_line(self) -> Config:
        if self.max_line_bytes > self.max_batch_bytes:
            raise ValueError("max_line_bytes must not be larger than max_batch_bytes")
        return self
