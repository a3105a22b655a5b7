"""Configuration of the `memory_limiter` processor (the Collector's, in MiB or percent)."""

from __future__ import annotations

from pydantic import Field, model_validator

from orasi_common.config.model import ComponentConfig


class Config(ComponentConfig):
    check_interval: float = Field(default=1.0, gt=0, description="Seconds between memory checks.")
    limit_mib: float | None = Field(default=None, gt=0, description="Hard limit on process RSS, MiB.")
    spike_limit_mib: float | None = Field(
        default=None,
        gt=0,
        description="Headroom below the hard limit; soft limit = limit - spike (default 20%).",
    )
    limit_percentage: float | None = Field(
        default=None, gt=0, le=100, description="Hard limit as % of the memory available (cgroup or host)."
    )
    spike_limit_percentage: float | None = Field(
        default=None, gt=0, le=100, description="Headroom as % of the memory available."
    )
    retry_after: float = Field(
        default=1.0, gt=0, description="Seconds senders are told to wait when data is refused."
    )
    release_when_idle: float = Field(
        default=5.0,
        ge=0,
        description="Seconds without data after which the allocators' free memory is returned to "
        "the kernel, once (0: never). It is returned before data is refused too.",
    )

    @model_validator(mode="after")
    def _one_limit(self) -> Config:
        if (self.limit_mib is None) == (self.limit_percentage is None):
            raise ValueError("set exactly one of limit_mib and limit_percentage")
        for limit, spike, name in (
            (self.limit_mib, self.spike_limit_mib, "mib"),
            (self.limit_percentage, self.spike_limit_percentage, "percentage"),
        ):
            if limit is not None and spike is not None and spike >= limit:
                raise ValueError(f"spike_limit_{name} must be below limit_{name}")
        return self
