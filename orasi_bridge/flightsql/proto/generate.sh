#!/usr/bin/env bash
# Regenerate FlightSql_pb2.py(i) from FlightSql.proto (never edit the generated files by hand).
# Needs grpcio-tools (in the dev extra: pip install -e ".[dev]").
set -euo pipefail
cd "$(dirname "$0")"
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. FlightSql.proto
