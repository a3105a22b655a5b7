"""Every component the gateway can be built from."""

from orasi_common.exporters import otap as otap_exporter
from orasi_common.exporters import otlp as otlp_exporter
from orasi_common.exporters import otlphttp
from orasi_common.extensions import auth, etcd, ratelimit
from orasi_common.pipeline.component import Factories
from orasi_common.processors import batch, memory_limiter
from orasi_common.receivers import otap as otap_receiver
from orasi_common.receivers import otlp as otlp_receiver
from orasi_common.receivers import prometheus_remote_write, syslog, zipkin
from orasi_gateway import loadbalancing

FACTORIES = Factories.of(
    otlp_receiver.FACTORY,
    otap_receiver.FACTORY,
    prometheus_remote_write.FACTORY,
    zipkin.FACTORY,
    syslog.FACTORY,
    memory_limiter.FACTORY,
    batch.FACTORY,
    otlp_exporter.FACTORY,
    otap_exporter.FACTORY,
    otlphttp.FACTORY,
    loadbalancing.FACTORY,
    etcd.FACTORY,
    auth.FACTORY,
    ratelimit.FACTORY,
)
