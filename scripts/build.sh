#!/usr/bin/env bash
# Configures and builds EDS into build/ (or the folder named by BUILD_DIR).
# Extra arguments go to cmake's configure step, e.g. -DEDS_SANITIZE=ON.
# TARGETS="eds-gateway eds-agent" builds only those targets (default: all,
# and then the live dashboard into BUILD_DIR/dashboard, scripts/build-dashboard.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ $# -gt 0 ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
fi
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS} -- --no-print-directory
if [ -z "${TARGETS:-}" ]; then
    if command -v npm >/dev/null; then
        scripts/build-dashboard.sh "$BUILD_DIR/dashboard"
    else
        echo "build.sh: npm not found: no dashboard in $BUILD_DIR/dashboard (scripts/install-deps.sh)" >&2
    fi
fi
