#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into build-fuzz/ and runs
# each for a bounded time on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>/; the repository is never written). Any crash,
# leak, timeout or sanitizer report fails the run (exit 1) and names the
# reproducer file and the command that replays it.
# Usage: scripts/fuzz.sh [TARGET...]        default: every target
#   FUZZ_SECONDS=N   seconds per target (default 7; 0 skips fuzzing)
#   BUILD_DIR=DIR    build folder (default build-fuzz); JOBS=N compile jobs
# Example: FUZZ_SECONDS=600 scripts/fuzz.sh fuzz_proto
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-7}
ALL_TARGETS=(fuzz_framer fuzz_json fuzz_proto fuzz_schema_load fuzz_validate)

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
if [ "$FUZZ_SECONDS" = 0 ]; then
    echo "fuzz: FUZZ_SECONDS=0, skipped"
    exit 0
fi

# clang and its libFuzzer runtime (libclang-rt-14-dev) are in install-deps' list.
if ! command -v clang >/dev/null || ! clang -fsanitize=fuzzer -x c -o /dev/null - \
    <<<'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' 2>/dev/null; then
    scripts/install-deps.sh
fi

if [ -f "$BUILD_DIR/CMakeCache.txt" ] && ! grep -q '^EDS_FUZZ:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then
    echo "fuzz: $BUILD_DIR is not a fuzz build; use another BUILD_DIR" >&2
    exit 2
fi
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    CC=clang cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDS_FUZZ=ON \
        -DEDS_BUILD_GATEWAY=OFF -DEDS_BUILD_BENCH=OFF >/dev/null
fi
if ! cmake --build "$BUILD_DIR" --target eds_fuzzers -j "$JOBS" -- --no-print-directory \
    >"$BUILD_DIR/fuzz-build.log" 2>&1; then
    cat "$BUILD_DIR/fuzz-build.log" >&2
    echo "fuzz: build failed" >&2
    exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
artifacts="$ROOT/$BUILD_DIR/fuzz-artifacts"
logs="$ROOT/$BUILD_DIR/fuzz-logs"
mkdir -p "$artifacts" "$logs"

status=0
for t in "${targets[@]}"; do
    bin="$ROOT/$BUILD_DIR/bin/$t"
    seeds="$ROOT/tests/fuzz/corpus/$t"
    if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
        echo "fuzz: unknown target '$t' (have: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
    cp -r "$seeds" "$scratch/$t"
    dict=()
    [ "$t" = fuzz_framer ] || dict=(-dict="$ROOT/tests/fuzz/json.dict")
    mkdir -p "$artifacts/$t"
    # Run from the scratch folder: libFuzzer may drop files in its cwd.
    if (cd "$scratch" && "$bin" "${dict[@]}" -max_total_time="$FUZZ_SECONDS" \
        -rss_limit_mb=2048 -timeout=5 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t/" "$scratch/$t" >"$logs/$t.log" 2>&1); then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log")
        echo "fuzz: $t ok (${runs:-?} inputs in ${FUZZ_SECONDS}s, corpus $(ls "$seeds" | wc -l) -> $(ls "$scratch/$t" | wc -l))"
    else
        status=1
        echo "fuzz: $t FAILED; log: $logs/$t.log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY)|runtime error|deadly signal' "$logs/$t.log" | head -5 || true
        repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logs/$t.log" | tail -1)
        if [ -n "$repro" ]; then
            echo "fuzz: reproducer: $repro"
            echo "fuzz: replay with: $bin $repro"
        fi
    fi
done
exit "$status"
