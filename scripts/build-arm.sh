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
#           /usr/local (stripped eds-agent, libedsagent.so, edsagent.h, the
#           schema), /etc/init.d/eds-agent, /etc/eds/eds-agent.conf.example
#           (never the live eds-agent.conf, so unpacking it again for an
#           upgrade keeps the configuration), and the shared libraries the
#           binaries need beyond glibc (libcjson, OpenSSL, libatomic) in
#           /usr/local/lib, which they search first (RPATH $ORIGIN/../lib).
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
TRIPLET=arm-linux-gnueabi
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
lib="$stage/usr/local/lib"
[ -x "$stage/usr/local/bin/eds-agent" ] || {
    echo "build-arm: the install left no usr/local/bin/eds-agent in $stage" >&2
    exit 1
}
mkdir -p "$lib"

# The shared libraries the binaries need, other than glibc's and libgcc's
# (every NI Linux RT image has those), found where the build took them.
glibc='^(ld-linux\.so\.3|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libresolv\.so\.2|libgcc_s\.so\.1)$'
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
queue=("$stage/usr/local/bin/eds-agent" "$lib"/libedsagent.so.*.*)
while [ ${#queue[@]} -gt 0 ]; do
    obj=${queue[0]}
    queue=("${queue[@]:1}")
    for so in $(needed "$obj"); do
        [[ $so =~ $glibc ]] && continue
        [ -e "$lib/$so" ] && continue
        src=""
        for dir in "$EDS_ARM_SYSROOT/usr/lib/$TRIPLET" "/usr/lib/$TRIPLET" "/lib/$TRIPLET"; do
            if [ -e "$dir/$so" ]; then
                src=$dir/$so
                break
            fi
        done
        [ -n "$src" ] || {
            echo "build-arm: $obj needs $so, found nowhere" >&2
            exit 1
        }
        cp -L "$src" "$lib/$so"
        chmod 0644 "$lib/$so"
        queue+=("$lib/$so")
    done
done

# Unpacking over a configured myRIO must not replace its configuration:
# the bundle carries the example only.
if [ -e "$stage/etc/eds/eds-agent.conf" ]; then
    mv "$stage/etc/eds/eds-agent.conf" "$stage/etc/eds/eds-agent.conf.example"
    chmod 0644 "$stage/etc/eds/eds-agent.conf.example"
fi

tarball="$BUILD_DIR/eds-agent-myrio.tar.gz"
tar -C "$stage" --owner=0 --group=0 -czf "$tarball" .
echo "build-arm: $tarball ($(du -h "$tarball" | cut -f1)): $(cd "$stage" && find . -type f | sort | tr '\n' ' ')"
