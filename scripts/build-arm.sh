#!/usr/bin/env bash
# Cross-builds libeds, the agent (eds-agent, libedsagent) and their unit
# tests for the NI myRIO (armel, ARMv7 Cortex-A9, softfp) into build-arm/
# (or the folder named by BUILD_DIR), with Debian's gcc-arm-linux-gnueabi
# and cmake/toolchain-myrio.cmake. Installs the cross packages first if
# missing (scripts/install-cross.sh). The gateway and the benchmarks are
# not built: they run on the Raspberry Pi, not the myRIO.
# Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-cross.sh
BUILD_DIR=${BUILD_DIR:-build-arm}
JOBS=${JOBS:-$(nproc)}
export EDS_ARM_SYSROOT=${EDS_ARM_SYSROOT:-$(scripts/install-cross.sh --print-sysroot)}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ $# -gt 0 ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-myrio.cmake" \
        -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
        -DEDS_BUILD_GATEWAY=OFF -DEDS_BUILD_BENCH=OFF -DEDS_SANITIZE=OFF "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$JOBS" -- --no-print-directory
