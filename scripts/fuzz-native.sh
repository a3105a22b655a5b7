#!/usr/bin/env bash
# Coverage-guided fuzzing of the native protobuf scanner's C code (orasi_common/pdata/_wirescan.c)
# under AddressSanitizer, for SECONDS (default 600): the long campaign of the native code (README,
# Security, Fuzzing). Builds the extension with clang -fsanitize=address,fuzzer-no-link, so that
# libFuzzer (atheris's, LD_PRELOADed with its ASan runtime) is guided by the C code's edges and
# comparisons, seeds a corpus with real OTLP requests (tests/fuzz/native.py) and fuzzes every
# entry point with structure-aware mutations. Fails (exit 1) on a crash, an ASan report, an
# input over the time or allocation bounds, or a broken contract (an exception other than the
# documented ValueError / MalformedData); the inputs that did it are written to ARTIFACTS
# (default: a new directory /tmp/fuzz-native-XXXXXX, kept only then; named in the last line),
# with libFuzzer's log beside them. Installs clang
# and its sanitizer runtimes (Debian: clang, libclang-rt-14-dev) when missing and run as root.
#   scripts/fuzz-native.sh [SECONDS]     environment: ARTIFACTS, CORPUS_DIR (the corpus, to keep
#                                        it growing across runs; default: a temporary one), SOURCE
#                                        (another _wirescan.c, e.g. one with a bug planted), LOG
#                                        (where libFuzzer's log goes; default: a temporary file)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
# the interpreter itself, not a wrapper script (pyenv's shims are bash: under LD_PRELOAD of the
# ASan runtime their leaks would be reported as ours)
PYTHON="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
ARTIFACTS="$(realpath -m "${ARTIFACTS:-$(mktemp -d /tmp/fuzz-native-XXXXXX)}")"

if ! command -v clang >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan_static-x86_64.a >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzz-native: needs clang and libclang-rt-dev; run as root: apt-get install -y clang libclang-rt-14-dev" >&2
        exit 1
    fi
    apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
    apt_get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null \
        || { apt_get update -qq && apt_get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null; }
fi
"$PYTHON" -c 'import atheris' 2>/dev/null || { echo "fuzz-native: needs atheris (pip install -e '.[test]')" >&2; exit 1; }
site="$("$PYTHON" -c 'import atheris; print(atheris.path())')"
[ -f "$site/asan_with_fuzzer.so" ] || { echo "fuzz-native: no asan_with_fuzzer.so in $site" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"; rmdir "$ARTIFACTS" 2>/dev/null || true' EXIT  # ARTIFACTS is kept if not empty
include="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
clang -shared -fPIC -O1 -g -fsanitize=address,fuzzer-no-link -fno-omit-frame-pointer -I"$include" \
    "${SOURCE:-orasi_common/pdata/_wirescan.c}" -o "$work/_wirescan.so"
# the structure-aware mutator: libFuzzer finds it by its symbol when both are preloaded
clang -shared -fPIC -O1 -I"$include" tests/fuzz/native_mutator.c -o "$work/native_mutator.so"

corpus="${CORPUS_DIR:-$work/corpus}"
log="${LOG:-$work/log}"
seeds="$work/seeds"
"$PYTHON" -m tests.fuzz.native seeds "$seeds"
mkdir -p "$corpus" "$ARTIFACTS"

# ASan stops at the first report. Leaks: libFuzzer runs LeakSanitizer when an input's mallocs
# outnumber its frees; LSan then reports every unreachable block in the process, including what
# libraries imported before leaked once at import (pydantic-core: 160 bytes), suppressed here
echo "leak:_pydantic_core" >"$work/lsan.supp"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:allocator_may_return_null=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$work/lsan.supp:print_suppressions=0"
export PYTHONMALLOC=malloc
args=(
    -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=4096 -max_len=4096 -detect_leaks=1 -print_final_stats=1 -print_pcs=0 -reload=1
    -artifact_prefix="$ARTIFACTS/" "$corpus" "$seeds"
)
status=0
LD_PRELOAD="$site/asan_with_fuzzer.so:$work/native_mutator.so" "$PYTHON" -m tests.fuzz.native fuzz "$work/_wirescan.so" -- "${args[@]}" \
    2>"$log" || status=$?
grep -v "^#[0-9]*.*\(NEW\|REDUCE\|pulse\)" "$log" | tail -n 60 >&2
grep "^#[0-9]" "$log" | tail -n 1 >&2
found="$(find "$ARTIFACTS" -maxdepth 1 -type f -newer "$work/_wirescan.so" | wc -l)"
if [ "$status" -ne 0 ] || [ "$found" -ne 0 ] || grep -q "ERROR: \(AddressSanitizer\|LeakSanitizer\|libFuzzer\)" "$log"; then
    cp "$log" "$ARTIFACTS/libfuzzer.log"
    echo "fuzz-native: FAILED (status $status); inputs that broke it and the log: $ARTIFACTS" >&2
    exit 1
fi
echo "fuzz-native: no crash, sanitizer report or broken contract in ${SECONDS_TO_RUN} s"
