"""Every component the bridge can be built from."""

from orasi_bridge import api, lake
from orasi_common.extensions import auth, etcd, ratelimit
from orasi_common.pipeline.component import Factories
from orasi_common.processors import batch, memory_limiter
from orasi_common.receivers import otap as otap_receiver
from orasi_common.receivers import otlp as otlp_receiver
from orasi_common.receivers import prometheus_remote_write, zipkin

FACTORIES = Factories.of(
    otlp_receiver.FACTORY,
    otap_receiver.FACTORY,
    prometheus_remote_write.FACTORY,
    zipkin.FACTORY,
    memory_limiter.FACTORY,
    batch.FACTORY,
    lake.FACTORY,
    api.FACTORY,
    etcd.FACTORY,
    auth.FACTORY,
    ratelimit.FACTORY,
)
