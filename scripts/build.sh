#!/usr/bin/env bash
# Configures and builds EDS into build/ (or the folder named by BUILD_DIR).
# Extra arguments go to cmake's configure step, e.g. -DEDS_SANITIZE=ON.
# TARGETS="eds-gateway eds-agent" builds only those targets (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ $# -gt 0 ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
fi
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS} -- --no-print-directory
