#!/usr/bin/env bash
# Install the Debian packages whose programs the tests drive (SERVERS.md), in one apt run and only
# those missing: `prometheus` (promtool checks and tests the rules; prometheus is a real scraper),
# `chromium` (the web console's browser tests, through Playwright), `rsyslog` (a real syslog
# sender) and `rsyslog-gnutls` (its TLS stream driver, for syslog over TLS). Idempotent. The packages' own services are not started (no init system here; Debian's
# policy-rc.d protocol: 101 = action forbidden); tests run their own processes on free ports on
# 127.0.0.1 and stop them by PID.
set -euo pipefail
lean=() missing=()
{ command -v promtool && command -v prometheus; } >/dev/null || lean+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || missing+=(rsyslog-gnutls)
if [ $((${#lean[@]} + ${#missing[@]})) -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test-packages: missing ${lean[*]} ${missing[*]}; run as root: apt-get install -y ${lean[*]} ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }  # other scripts may be installing too
apt_get update -qq
# prometheus without the exporters it recommends; chromium and rsyslog as Debian recommends them
[ ${#lean[@]} -eq 0 ] || apt_get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
[ ${#missing[@]} -eq 0 ] || apt_get install -y -qq "${missing[@]}" >/dev/null
command -v promtool >/dev/null && command -v chromium >/dev/null
echo "test-packages: installed ${lean[*]} ${missing[*]}"
