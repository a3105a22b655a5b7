#!/usr/bin/env bash
# The native protobuf scanner (orasi_common/pdata/_wirescan.c) under AddressSanitizer: builds it
# with -fsanitize=address into a temporary directory, loads that build in place of the installed
# one and runs the `wirescan` fuzz target (tests/fuzz) on it for SECONDS (default 20). Fails on
# any ASan report or broken contract. Needs gcc and libasan (Debian: gcc).
#   scripts/fuzz-asan.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-20}"
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
include="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
gcc -shared -fPIC -O1 -g -fsanitize=address -fno-omit-frame-pointer -I"$include" \
    orasi_common/pdata/_wirescan.c -o "$work/_wirescan.so"
libasan="$(gcc -print-file-name=libasan.so)"
# Python's own allocator keeps small buffers in its arenas, where ASan sees no overflow; so every
# allocation goes through ASan's. Its quarantine (freed memory held back to catch use after free)
# and shadow memory then swell the peak RSS that tests/fuzz checks, so that check is off here and
# ASan bounds any one allocation instead (targets.MAX_GROWTH_MB, as scripts/fuzz-native.sh does).
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:max_allocation_size_mb=512"
LD_PRELOAD="$libasan" "$PYTHON" - "$work/_wirescan.so" "$SECONDS_TO_RUN" 2>"$work/stderr" <<'PY' || status=$?
import importlib.util
import sys

path, seconds = sys.argv[1], float(sys.argv[2])
spec = importlib.util.spec_from_file_location("orasi_common.pdata._wirescan", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["orasi_common.pdata._wirescan"] = module  # before anything of orasi's imports it

from orasi_common.pdata import protoscan, validate  # noqa: E402
from tests.fuzz import targets  # noqa: E402

targets.peak_rss_mb = lambda: 0.0  # see ASAN_OPTIONS above

assert protoscan._wirescan is module and validate._wirescan is module, "the ASan build is not the one in use"
from tests.fuzz.__main__ import _hypothesis  # noqa: E402

sys.exit(_hypothesis("wirescan", seconds))
PY
cat "$work/stderr" >&2
if [ "${status:-0}" -ne 0 ] || grep -q "ERROR: AddressSanitizer" "$work/stderr"; then
    echo "fuzz-asan: FAILED (status ${status:-0})" >&2
    exit 1
fi
echo "fuzz-asan: no AddressSanitizer report"
