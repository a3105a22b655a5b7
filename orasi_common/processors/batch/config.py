"""Configuration of the `batch` processor."""

from __future__ import annotations

from pydantic import Field, model_validator

from orasi_common.config.model import ComponentConfig


class Config(ComponentConfig):
    timeout: float = Field(
        default=0.2, gt=0, description="Seconds a partial batch waits before it is sent anyway."
    )
    send_batch_size: int = Field(
        default=8192, ge=1, description="Items that trigger a send regardless of the timeout."
    )
    send_batch_size_mib: float | None = Field(
        default=3.0,
        gt=0,
        description="Largest serialized batch, MiB: reaching it triggers a send, and a batch that "
        "would pass it is sent as two (keeps requests under the common 4 MiB receive limit; "
        "null: items only).",
    )
    send_batch_max_size: int = Field(
        default=0, ge=0, description="Largest batch sent, in items; larger ones are split (0: no limit)."
    )
    wait_for_send: bool = Field(
        default=False,
        description="Return from consume only once the batch was handed on (use before a "
        "write-ahead-log queue, so that acknowledged means durable; adds up to `timeout`).",
    )
    max_tenants: int = Field(
        default=1000, ge=1, description="Tenants batched at once; data of one more is refused for now."
    )

    @model_validator(mode="after")
    def _sizes(self) -> Config:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError("send_batch_max_size must be 0 or at least send_batch_size")
        return self
