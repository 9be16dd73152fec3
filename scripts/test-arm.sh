#!/usr/bin/env bash
# The myRIO build's tests: cross-builds libeds, the agent and their cmocka
# unit tests into build-arm/ (scripts/build-arm.sh, which installs the cross
# packages if missing) and runs the unit tests under qemu-arm through ctest
# (the toolchain file sets CMAKE_CROSSCOMPILING_EMULATOR). Checks that the
# agent is a 32-bit ARM EABI5 binary with the soft-float calling convention
# (armel, as NI's arm-nilrt-linux-gnueabi toolchain builds it).
# The integration tests are not part of build-arm/'s ctest (they need the
# x86 gateway); the agent's ones run at the end with the ARM eds-agent under
# qemu against the host build's gateway, when build/bin/eds-gateway exists.
# Usage: scripts/test-arm.sh [ctest args...]   e.g. scripts/test-arm.sh -R spool
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-arm}
JOBS=${JOBS:-$(nproc)}
export BUILD_DIR JOBS

echo "== build (myRIO: armv7-a, armel softfp) in $BUILD_DIR/"
scripts/build-arm.sh

# The float ABI: armhf binaries carry Tag_ABI_VFP_args (floats in VFP
# registers) and would not link with the myRIO's softfp libraries.
status=0
for bin in "$BUILD_DIR"/bin/eds-agent "$BUILD_DIR"/lib/libedsagent.so; do
    [ -e "$bin" ] || continue
    desc=$(file -bL "$bin")
    attrs=$(readelf -A "$bin")
    case "$desc" in
    *"ELF 32-bit LSB"*"ARM, EABI5"*) ;;
    *)
        echo "test-arm: $bin is not a 32-bit ARM EABI5 ELF: $desc" >&2
        status=1
        ;;
    esac
    if grep -q 'Tag_ABI_VFP_args' <<<"$attrs" || ! grep -q 'Tag_FP_arch: VFPv3' <<<"$attrs"; then
        echo "test-arm: $bin: not VFPv3 with the soft-float calling convention:" >&2
        echo "$attrs" >&2
        status=1
    fi
    glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1)
    echo "$bin: ${desc%%,*}, ARM EABI5, VFPv3 softfp, needs ${glibc:-no versioned glibc}"
done

echo "== tests: $BUILD_DIR/ (unit tests under qemu-arm)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" -L unit "$@" || status=1

# The agent's integration tests with the ARM eds-agent (under qemu-arm)
# against the host's eds-gateway and mosquitto, when a host build has the
# gateway (scripts/test.sh builds build/ first). Skipped with ctest
# arguments (a filtered run) or EDS_ARM_INTEGRATION=0.
HOST_BIN=${EDS_HOST_BIN_DIR:-build/bin}
if [ "${EDS_ARM_INTEGRATION:-1}" != 0 ] && [ $# -eq 0 ] && [ -x "$HOST_BIN/eds-gateway" ]; then
    echo "== tests: ARM eds-agent (qemu-arm) against the host's eds-gateway and mosquitto"
    mixbin=$(mktemp -d)
    trap 'rm -rf "$mixbin"' EXIT
    ln -s "$PWD/$HOST_BIN/eds-gateway" "$mixbin/eds-gateway"
    printf '#!/bin/sh\nexec qemu-arm -L / "%s" "$@"\n' "$PWD/$BUILD_DIR/bin/eds-agent" \
        >"$mixbin/eds-agent"
    chmod +x "$mixbin/eds-agent"
    for t in tests/integration/test_agent_*.py; do
        [ -e "$t" ] || continue
        echo "-- $t"
        EDS_BIN_DIR=$mixbin EDS_SOURCE_DIR=$PWD PYTHONDONTWRITEBYTECODE=1 \
            /usr/bin/python3 "$t" </dev/null || status=1
    done
fi
exit "$status"
