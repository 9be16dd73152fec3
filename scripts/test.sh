#!/usr/bin/env bash
# Runs every EDS test: installs missing packages, builds the normal and the
# sanitizer (ASan+UBSan) builds, and runs ctest (unit + integration) in both;
# then the myRIO (armel) cross build's unit tests under qemu-arm
# (scripts/test-arm.sh; EDS_SKIP_ARM=1 skips it) and the Raspberry Pi builds
# (arm64, armhf: scripts/test-pi.sh; EDS_SKIP_PI=1 skips them, and so do
# ctest arguments).
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CI=${CI:-}
JOBS=${JOBS:-$(nproc)}

echo "== build (RelWithDebInfo) in build/"
BUILD_DIR=build scripts/build.sh
echo "== build (ASan + UBSan) in build-asan/"
BUILD_DIR=build-asan scripts/build.sh -DEDS_SANITIZE=ON -DEDS_BUILD_BENCH=OFF

status=0
echo "== tests: build/"
ctest --test-dir build --output-on-failure -j "$JOBS" "$@" || status=1
echo "== tests: build-asan/ (sanitizers)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" "$@" || status=1
if [ "${EDS_SKIP_ARM:-0}" != 1 ]; then
    # The myRIO build (armel cross, scripts/test-arm.sh): installs the cross
    # packages if missing, builds build-arm/, runs its unit tests under qemu.
    echo "== ARM (qemu) unit tests"
    scripts/test-arm.sh "$@" || status=1
fi
if [ "${EDS_SKIP_PI:-0}" != 1 ] && [ $# -eq 0 ]; then
    # The Raspberry Pi builds (arm64, armhf; scripts/test-pi.sh): the gateway
    # and its unit tests cross-built, run under qemu-user, its delivery tests
    # with the ARM gateway against the host's broker, and the Pi's packages.
    echo "== Raspberry Pi (arm64, armhf under qemu)"
    JOBS="$JOBS" scripts/test-pi.sh || status=1
fi
echo "== fuzzing (libFuzzer, ASan + UBSan, about 30 s) in build-fuzz/"
JOBS="$JOBS" scripts/fuzz.sh || status=1
if [ "$status" = 0 ]; then echo "== all tests passed"; else echo "== TESTS FAILED"; fi
exit "$status"
