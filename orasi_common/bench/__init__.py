"""``orasi bench``: a load generator for OTLP and OTAP endpoints, and the corpus reader.

    cli       the ``orasi bench`` command (imports the rest only when it runs)
    engine    the load loop: fixed or maximal rate, workers, every answer recorded
    senders   one export request over OTLP/gRPC, OTLP/HTTP or OTAP, and its outcome
    source    what is sent: a corpus file re-batched, or generated requests
    corpus    corpus files: read, re-batch, replay traces with fresh ids
    generate  generated requests of each signal
    report    the text and JSON report, the progress line, the PNG plot

This package stays light to import: the ``orasi`` command imports ``cli`` at every start.
"""

PROTOCOLS = ("otlp-grpc", "otlp-http", "otap")
SIGNALS = ("traces", "logs", "metrics")
GENERATED = "generated"

__all__ = ["GENERATED", "PROTOCOLS", "SIGNALS"]
