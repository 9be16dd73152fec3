#!/usr/bin/env bash
# The Raspberry Pi builds' tests, for arm64 (Raspberry Pi OS 64-bit) and
# armhf (32-bit): cross-builds eds-gateway, eds-validate and the unit tests of
# libeds and the gateway into build-pi-<arch>/ with Debian's cross compiler
# against the Pi's Debian libraries (cmake/toolchain-pi.cmake; the toolchain
# and sysroot come from scripts/install-cross-pi.sh), checks the binary's
# architecture, runs the unit tests under qemu-user, then the gateway's
# delivery tests with the ARM eds-gateway under qemu-user against a native
# Mosquitto (records in, on the broker, acked; a resend recognised; SIGKILL
# and restart mid-stream, at qos 1 and qos 2), and finally builds the Pi's
# packages (scripts/package.sh --arch <arch> --lintian). ARM's unsigned char
# and weaker memory ordering are where such code breaks.
#
# Usage: scripts/test-pi.sh [arm64|armhf]...   (default: both)
# Environment: JOBS; EDS_PI_PACKAGES=0 skips the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)

# The gateway's unit tests and libeds's (the agent's run in the myRIO build).
units=()
for t in tests/unit/test_*.c tests/unit/gateway/test_*.c; do
    units+=("$(basename "$t" .c)")
done
unit_re="^unit\\.($(
    IFS='|'
    echo "${units[*]}"
))\$"
# The delivery tests that exercise the ARM gateway end to end.
integration=(
    "tests/integration/test_gateway_delivery.py -k test_resend_after_reconnect -k sigkill"
    "tests/integration/test_gateway_exactly_once.py -k test_gateway_sigkill_three_times"
)

# A sysroot given by the caller (EDS_PI_SYSROOT) serves one architecture;
# otherwise each has its own (scripts/install-cross-pi.sh's default).
user_sysroot=${EDS_PI_SYSROOT:-}
status=0
for arch in "${arches[@]}"; do
    case "$arch" in
    arm64) expect="ELF 64-bit LSB .*ARM aarch64" qemu=qemu-aarch64 ;;
    armhf) expect="ELF 32-bit LSB .*ARM, EABI5" qemu=qemu-arm ;;
    *)
        echo "test-pi: unknown architecture '$arch' (arm64, armhf)" >&2
        exit 2
        ;;
    esac
    build=build-pi-$arch
    echo "== build (Raspberry Pi, $arch) in $build/"
    EDS_PI_SYSROOT=$user_sysroot scripts/install-cross-pi.sh "$arch"
    export EDS_PI_ARCH=$arch
    EDS_PI_SYSROOT=$(EDS_PI_SYSROOT=$user_sysroot scripts/install-cross-pi.sh "$arch" --print-sysroot)
    export EDS_PI_SYSROOT
    if [ cmake/toolchain-pi.cmake -nt "$build/CMakeCache.txt" ]; then
        rm -f "$build/CMakeCache.txt"
    fi
    # Configured every time (about a second): the unit tests are globbed, and a
    # new test file must be a target before it is named below.
    cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-pi.cmake" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDS_BUILD_BENCH=OFF >/dev/null
    cmake --build "$build" -j "$JOBS" --target eds-gateway eds-validate "${units[@]}" \
        -- --no-print-directory >/dev/null
    gw=$build/bin/eds-gateway
    desc=$(file -b "$gw")
    if [[ $desc =~ $expect ]]; then
        echo "$gw: ${desc%%, BuildID*}"
    else
        echo "test-pi: $gw is not a $arch binary: $desc" >&2
        status=1
        continue
    fi
    if [ "$arch" = armhf ] && ! readelf -A "$gw" | grep -q 'Tag_ABI_VFP_args: VFP registers'; then
        echo "test-pi: $gw does not use the hard-float calling convention (armhf)" >&2
        status=1
    fi

    echo "== tests: $build/ (unit tests under $qemu)"
    # --no-tests=error: a regex that matches nothing must not pass.
    ctest --test-dir "$build" --output-on-failure --no-tests=error -j "$JOBS" -R "$unit_re" ||
        status=1

    echo "== tests: the $arch eds-gateway ($qemu) with the host's mosquitto"
    mixbin=$(mktemp -d)
    printf '#!/bin/sh\nexec %s -L "%s" "%s" "$@"\n' "$qemu" "$EDS_PI_SYSROOT/root" \
        "$PWD/$gw" >"$mixbin/eds-gateway"
    chmod +x "$mixbin/eds-gateway"
    # The wrapper really runs the ARM binary (and it starts under emulation).
    "$mixbin/eds-gateway" --version || status=1
    for t in "${integration[@]}"; do
        echo "-- $t"
        # shellcheck disable=SC2086
        if EDS_BIN_DIR=$mixbin EDS_SOURCE_DIR=$PWD PYTHONDONTWRITEBYTECODE=1 \
            /usr/bin/python3 $t </dev/null >"$mixbin/log" 2>&1 &&
            # Python 3.11's unittest passes when -k matches no test.
            grep -q '^Ran [1-9]' "$mixbin/log"; then
            tail -n 3 "$mixbin/log"
        else
            cat "$mixbin/log"
            status=1
        fi
    done
    rm -rf "$mixbin"

    if [ "${EDS_PI_PACKAGES:-1}" != 0 ]; then
        echo "== packages for $arch (scripts/package.sh --arch $arch --lintian)"
        # pipefail: the pipeline's status is package.sh's (grep's is made 0).
        JOBS=$JOBS scripts/package.sh --arch "$arch" --lintian 2>&1 |
            { grep -v 'running with root privileges' || true; } || status=1
    fi
done
exit "$status"
