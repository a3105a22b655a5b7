"""Configuration of the `resource` processor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orasi_common.config.model import ComponentConfig


class Config(ComponentConfig):
    attributes: dict[str, str | bool | int | float] = Field(
        default_factory=dict, description="Static resource attributes to add, e.g. deployment.environment."
    )
    detect: bool = Field(
        default=True,
        description="Add node, Kubernetes and region attributes from the environment, and orasi.agent.id.",
    )
    kubernetes_mode: Literal["node", "pod"] = Field(
        default="node",
        description=(
            "`node` (DaemonSet agent): add k8s.node.name only, since the agent's pod is not the "
            "sender's. `pod` (sidecar agent): also k8s.pod.name, k8s.pod.uid, k8s.namespace.name."
        ),
    )
    override: bool = Field(
        default=False, description="Replace attributes the sender already set (default: keep theirs)."
    )
