#!/usr/bin/env bash
# Cross-builds libeds, the agent (eds-agent, libedsagent) and their unit
# tests for the NI myRIO (armel, ARMv7 Cortex-A9, softfp) into build-arm/
# (or the folder named by BUILD_DIR), with Debian's gcc-arm-linux-gnueabi
# and cmake/toolchain-myrio.cmake. Installs the cross packages first if
# missing (scripts/install-cross.sh). The gateway and the benchmarks are
# not built: they run on the Raspberry Pi, not the myRIO.
#
# --bundle  also writes $BUILD_DIR/eds-agent-myrio.tar.gz, the files to copy
#           to a myRIO (docs/myrio.md): the agent's install tree under
#           /usr/local (stripped static eds-agent, libedsagent.so with
#           OpenSSL and cJSON inside, edsagent.h + eds_err.h, the schema,
#           share/eds-agent/uninstall.sh and the list of files it removes),
#           /etc/init.d/eds-agent, /etc/eds/eds-agent.conf.example (never the
#           live eds-agent.conf, so unpacking it again for an upgrade keeps
#           the configuration). Files and symlinks only: no directory
#           entries, so unpacking at / leaves /, /etc, /usr as they were.
# Other arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=0
args=()
for arg in "$@"; do
    case "$arg" in
    --bundle) bundle=1 ;;
    *) args+=("$arg") ;;
    esac
done
scripts/install-cross.sh
BUILD_DIR=${BUILD_DIR:-build-arm}
JOBS=${JOBS:-$(nproc)}
export EDS_ARM_SYSROOT=${EDS_ARM_SYSROOT:-$(scripts/install-cross.sh --print-sysroot)}
# The toolchain file's *_INIT flags only reach a new cache: start afresh
# when it changed since the last configure.
if [ cmake/toolchain-myrio.cmake -nt "$BUILD_DIR/CMakeCache.txt" ]; then
    rm -f "$BUILD_DIR/CMakeCache.txt"
fi
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ ${#args[@]} -gt 0 ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-myrio.cmake" \
        -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
        -DEDS_BUILD_GATEWAY=OFF -DEDS_BUILD_BENCH=OFF -DEDS_SANITIZE=OFF \
        ${args[@]+"${args[@]}"} >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$JOBS" -- --no-print-directory
[ "$bundle" = 1 ] || exit 0

stage="$BUILD_DIR/myrio-bundle"
rm -rf "$stage"
DESTDIR="$PWD/$stage" cmake --install "$BUILD_DIR" --prefix /usr/local --component agent \
    --strip >/dev/null
[ -x "$stage/usr/local/bin/eds-agent" ] || {
    echo "build-arm: the install left no usr/local/bin/eds-agent in $stage" >&2
    exit 1
}
# eds-agent is static and libedsagent.so carries OpenSSL and cJSON: nothing
# else to bundle (scripts/check-abi.sh, run by scripts/test-arm.sh, checks).

# Unpacking over a configured myRIO must not replace its configuration:
# the bundle carries the example only.
if [ -e "$stage/etc/eds/eds-agent.conf" ]; then
    mv "$stage/etc/eds/eds-agent.conf" "$stage/etc/eds/eds-agent.conf.example"
    chmod 0644 "$stage/etc/eds/eds-agent.conf.example"
fi
# The docs belong on the PC, not in the myRIO's flash.
rm -rf "$stage/usr/local/share/doc"

# The uninstall script and the list of files it removes (itself included).
share="$stage/usr/local/share/eds-agent"
mkdir -p "$share"
install -m 0755 deploy/eds-agent-uninstall.sh "$share/uninstall.sh"
(cd "$stage" && find . \( -type f -o -type l \) | sed 's|^\./|/|' | sort) >"$share/files"
echo /usr/local/share/eds-agent/files >>"$share/files"
sort -u -o "$share/files" "$share/files"

# Files and symlinks only, named without "./": no entry for /, /etc, /usr
# or any other directory, so unpacking at / changes no existing directory's
# mode, owner or time (tar makes missing ones with the usual 0755).
tarball="$BUILD_DIR/eds-agent-myrio.tar.gz"
(cd "$stage" && find . \( -type f -o -type l \) | sed 's|^\./||' | LC_ALL=C sort) >"$BUILD_DIR/bundle.list"
tar -C "$stage" --owner=0 --group=0 --numeric-owner --no-recursion -czf "$tarball" \
    -T "$BUILD_DIR/bundle.list"
echo "build-arm: $tarball ($(du -h "$tarball" | cut -f1)): $(tr '\n' ' ' <"$BUILD_DIR/bundle.list")"
