"""The `etcd` extension: the service registers itself in the control plane (ARCHITECTURE §7)."""

from orasi_common.extensions.etcd.config import Config
from orasi_common.extensions.etcd.extension import EtcdExtension
from orasi_common.pipeline.component import ExtensionFactory

FACTORY = ExtensionFactory("etcd", Config, EtcdExtension)

__all__ = ["FACTORY", "Config", "EtcdExtension"]
