#!/usr/bin/env bash
# Regenerate the Python code of proto/ (never edit the generated files by hand).
# Needs grpcio-tools (in the dev extra: pip install -e ".[dev]").
set -euo pipefail
cd "$(dirname "$0")/.."
out=orasi_common/transport/otap/proto
python3 -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" \
  proto/opentelemetry/proto/experimental/arrow/v1/arrow_service.proto
# protoc mirrors the proto path; keep the module flat beside its package.
mv "$out/opentelemetry/proto/experimental/arrow/v1/arrow_service_pb2.py" "$out/arrow_service_pb2.py"
mv "$out/opentelemetry/proto/experimental/arrow/v1/arrow_service_pb2.pyi" "$out/arrow_service_pb2.pyi"
rm -r "$out/opentelemetry"
