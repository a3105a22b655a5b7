#!/usr/bin/env bash
# Regenerate zipkin_v2_pb2.py(i) from zipkin_v2.proto (never edit those by hand).
# Needs grpcio-tools (in the dev extra: pip install -e ".[dev]").
set -euo pipefail
cd "$(dirname "$0")"
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. zipkin_v2.proto
