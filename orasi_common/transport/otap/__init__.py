"""OTAP (OpenTelemetry Arrow) on the wire, shared by the otap receiver and exporter.

- ``protocol``: the three gRPC services, their method paths, and BatchStatus ↔ errors (on the
  status table of ``transport.status``);
- ``stream``: one Arrow IPC stream per payload type inside one gRPC stream (StreamProducer,
  StreamConsumer);
- ``proto``: the generated messages (``scripts/generate-proto.sh``; never edited by hand).

Nothing is imported here: ``stream`` brings in pyarrow, which ``protocol`` does not need.
"""
