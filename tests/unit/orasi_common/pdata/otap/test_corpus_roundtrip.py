"""Every file of the telemetry corpus (``shared/corpus/``) round-trips OTLP → OTAP → OTLP
losslessly, through one stream (``StreamProducer`` → ``StreamConsumer``) per file and batch size,
as the `otap` exporter and receiver carry it: each request comes back equal, message for message.
At 1,000 items every batch of the file is checked; at 100 items the first ``SMALL_ITEMS`` items
(the per-batch work is the same, and the whole file at 100 items would take a minute).
"""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from orasi_common.bench.corpus import read_requests, rebatch
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.testing.shared import shared_dir
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.stream import StreamConsumer, StreamProducer

CORPUS = shared_dir() / "corpus"
FILES = {
    "hipstershop-oteltraces.zst": Signal.TRACES,
    "hipstershop-otelmetrics.zst": Signal.METRICS,
    "loghub-otellogs.zst": Signal.LOGS,
}
SMALL_ITEMS = 10_000


@pytest.fixture(scope="module", params=sorted(FILES))
def corpus(request: pytest.FixtureRequest) -> tuple[Signal, list[Message]]:
    name: str = request.param
    return FILES[name], read_requests(CORPUS / name, FILES[name])


def test_every_corpus_file_is_listed() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.zst")) == sorted(FILES)


@pytest.mark.parametrize("size", [100, 1000])
def test_a_corpus_file_round_trips_through_one_stream(
    corpus: tuple[Signal, list[Message]], size: int
) -> None:
    signal, requests = corpus
    batches = rebatch(requests, size, signal)
    if size < 1000:
        batches = batches[: SMALL_ITEMS // size]
    producer, consumer = StreamProducer(), StreamConsumer()
    request_type = SPECS[signal].request_type
    for i, request in enumerate(batches):
        sent = otap_pb2.BatchArrowRecords(
            batch_id=i, arrow_payloads=producer.encode(codec.encode(Batch.from_message(signal, request)))
        ).SerializeToString()
        tables = consumer.decode(otap_pb2.BatchArrowRecords.FromString(sent).arrow_payloads)
        # as the receiver takes it: checked (codec.decode), then read as OTLP
        received = request_type.FromString(codec.decode(signal, tables, tenant="t", batch_id=str(i)).raw)
        assert received == request, f"batch {i} of {size} items differs after the round trip"
    assert len(batches) > 1
