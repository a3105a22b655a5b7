#!/usr/bin/env bash
# Install the tools the monitoring tests use (SERVERS.md): Debian's `prometheus` package, which
# brings `promtool` (check rules, test rules) and `prometheus` (a real scraper for the
# end-to-end test). Idempotent: does nothing when both are already on PATH. The package's own
# service is not started (no init system here); the tests run their own Prometheus on a free
# port on 127.0.0.1 and stop it by its PID.
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "monitoring-tools: promtool/prometheus missing; run as root: apt-get install -y prometheus" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The package would start its service on port 9090 where services may start; keep it from doing
# so (Debian's policy-rc.d protocol: 101 = action forbidden) unless a policy is already set.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }  # other scripts may be installing too
apt_get update -qq
apt_get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null && command -v prometheus >/dev/null
echo "monitoring-tools: $(promtool --version 2>&1 | head -1)"
