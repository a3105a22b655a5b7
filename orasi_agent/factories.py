"""Every component the agent can be built from (the one list; nothing registers itself)."""

from orasi_agent.processors import resource
from orasi_common.exporters import otap as otap_exporter
from orasi_common.exporters import otlp as otlp_exporter
from orasi_common.exporters import otlphttp
from orasi_common.extensions import auth, etcd, ratelimit
from orasi_common.pipeline.component import Factories
from orasi_common.processors import batch, memory_limiter
from orasi_common.receivers import filelog, syslog
from orasi_common.receivers import otlp as otlp_receiver

FACTORIES = Factories.of(
    otlp_receiver.FACTORY,
    syslog.FACTORY,
    filelog.FACTORY,
    memory_limiter.FACTORY,
    batch.FACTORY,
    resource.FACTORY,
    otlp_exporter.FACTORY,
    otap_exporter.FACTORY,
    otlphttp.FACTORY,
    etcd.FACTORY,
    auth.FACTORY,
    ratelimit.FACTORY,
)
