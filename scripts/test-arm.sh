#!/usr/bin/env bash
# The myRIO build's tests: cross-builds libeds, the agent and their cmocka
# unit tests into build-arm/ (scripts/build-arm.sh, which installs the cross
# packages if missing) and runs the unit tests under qemu-arm through ctest
# (the toolchain file sets CMAKE_CROSSCOMPILING_EMULATOR). Checks with
# scripts/check-abi.sh that eds-agent (static) and libedsagent.so run on NI
# Linux RT: armel softfp, glibc <= 2.24, no library beyond glibc's, only the
# edsagent.h API exported.
# The integration tests are not part of build-arm/'s ctest (they need the
# x86 gateway); the agent's ones run at the end with the ARM eds-agent under
# qemu against the host build's gateway, when build/bin/eds-gateway exists,
# and then tests/myrio/test_myrio_qemu.py (names from /etc/hosts, TLS, memory,
# libedsagent.so loaded with dlopen()).
# Usage: scripts/test-arm.sh [ctest args...]   e.g. scripts/test-arm.sh -R spool
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-arm}
JOBS=${JOBS:-$(nproc)}
export BUILD_DIR JOBS

echo "== build (myRIO: armv7-a, armel softfp) in $BUILD_DIR/, and the bundle"
scripts/build-arm.sh --bundle

# What NI Linux RT's loader would check (glibc 2.24, base libraries only,
# armel softfp) and libedsagent.so's exports: scripts/check-abi.sh.
status=0
echo "== ABI: what the myRIO (glibc 2.24) needs of the binaries"
scripts/check-abi.sh "$BUILD_DIR"/bin/eds-agent "$BUILD_DIR"/lib/libedsagent.so || status=1
scripts/check-abi.sh "$BUILD_DIR"/eds-agent-myrio.tar.gz || status=1
echo "== the bundle: unpacking at / and uninstall.sh"
EDS_MYRIO_BUNDLE=$PWD/$BUILD_DIR/eds-agent-myrio.tar.gz EDS_SOURCE_DIR=$PWD \
    PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 tests/myrio/test_myrio_bundle.py </dev/null ||
    status=1

echo "== tests: $BUILD_DIR/ (unit tests under qemu-arm)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" -L unit "$@" || status=1

# The agent's integration tests with the ARM eds-agent (under qemu-arm)
# against the host's eds-gateway and mosquitto, when a host build has the
# gateway (scripts/test.sh builds build/ first). Skipped with ctest
# arguments (a filtered run) or EDS_ARM_INTEGRATION=0.
HOST_BIN=${EDS_HOST_BIN_DIR:-build/bin}
if [ "${EDS_ARM_INTEGRATION:-1}" != 0 ] && [ $# -eq 0 ] && [ -x "$HOST_BIN/eds-gateway" ]; then
    echo "== tests: ARM eds-agent (qemu-arm) against the host's eds-gateway and mosquitto"
    # The static agent runs in a qemu root with no libraries at all.
    mixbin=$(mktemp -d)
    trap 'rm -rf "$mixbin"' EXIT
    mkdir "$mixbin/root"
    ln -s "$PWD/$HOST_BIN/eds-gateway" "$mixbin/eds-gateway"
    printf '#!/bin/sh\nexec qemu-arm -L "%s" "%s" "$@"\n' "$mixbin/root" \
        "$PWD/$BUILD_DIR/bin/eds-agent" >"$mixbin/eds-agent"
    chmod +x "$mixbin/eds-agent"
    # A program linking the ARM libedsagent.so (an ordinary armel binary: -L /).
    printf '#!/bin/sh\nexec qemu-arm -L / "%s" "$@"\n' "$PWD/$BUILD_DIR/bin/cmd_stdout_lib" \
        >"$mixbin/cmd_stdout_lib"
    chmod +x "$mixbin/cmd_stdout_lib"
    for t in tests/integration/test_agent_*.py; do
        [ -e "$t" ] || continue
        echo "-- $t"
        EDS_BIN_DIR=$mixbin EDS_SOURCE_DIR=$PWD PYTHONDONTWRITEBYTECODE=1 \
            /usr/bin/python3 "$t" </dev/null || status=1
    done
    # Name resolution without NSS, TLS host checks, memory, and libedsagent.so through
    # dlopen() (the LabVIEW path).
    echo "-- tests/myrio/test_myrio_qemu.py"
    EDS_BIN_DIR=$PWD/$HOST_BIN EDS_SOURCE_DIR=$PWD EDS_ARM_BUILD_DIR=$PWD/$BUILD_DIR \
        PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 tests/myrio/test_myrio_qemu.py </dev/null ||
        status=1
fi
exit "$status"
