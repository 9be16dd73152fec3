#!/usr/bin/env bash
# Installs what the Raspberry Pi cross builds of the gateway need, if
# missing: Debian's cross compiler for ARCH (gcc-aarch64-linux-gnu for
# arm64, gcc-arm-linux-gnueabihf for armhf) and qemu-user on the host, and
# the target's libraries (glibc, OpenSSL, cJSON, Paho MQTT C, cmocka)
# unpacked from Debian's ARCH packages into a sysroot folder. Not installed
# as multiarch packages: those must carry exactly the host's version of
# each library, and security updates (libssl3) move the two apart; the
# same reason as for the myRIO's OpenSSL in scripts/install-cross.sh.
#
# The sysroot is $EDS_PI_SYSROOT, else ${XDG_CACHE_HOME:-$HOME/.cache}/eds/
# ARCH-sysroot (no HOME: /var/cache/eds/ARCH-sysroot), with
#   root/        every package unpacked into one tree: headers and libraries
#                for the build, the loader and libraries for qemu-user -L
#   debs/NAME/   each package unpacked on its own with its DEBIAN/ control
#                files, so dpkg-shlibdeps reads the packages' symbols files
#                for the Depends of a cross-built package
# (scripts/sysroot-path.sh; cmake/toolchain-pi.cmake uses it too). Idempotent and quiet when
# everything is there; needs root (or sudo) only to install host packages.
#
# Usage: scripts/install-cross-pi.sh arm64|armhf [--print-sysroot]
set -euo pipefail

arch=${1:-}
case "$arch" in
arm64) TRIPLET=aarch64-linux-gnu ;;
armhf) TRIPLET=arm-linux-gnueabihf ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "install-cross-pi: usage: $0 arm64|armhf [--print-sysroot]" >&2
    exit 2
    ;;
esac
SYSROOT=$("$(dirname "$0")/sysroot-path.sh" "$arch-sysroot" "${EDS_PI_SYSROOT:-}")
case "${2:-}" in
--print-sysroot)
    echo "$SYSROOT"
    exit 0
    ;;
"") ;;
*)
    echo "install-cross-pi: unknown option '$2'" >&2
    exit 2
    ;;
esac

HOST_PKGS=("gcc-$TRIPLET" "libc6-dev-$arch-cross" qemu-user dpkg-dev file)
# The target's runtime and development packages (the runtime ones also give
# qemu-user the loader and libraries to run the binaries and tests).
TARGET_PKGS=(libc6 libgcc-s1 libssl3 libssl-dev libcjson1 libcjson-dev libpaho-mqtt1.3
             libpaho-mqtt-dev libcmocka0 libcmocka-dev libmicrohttpd12 libmicrohttpd-dev
             libgnutls30 libgmp10 libhogweed6 libnettle8 libidn2-0 libunistring2 libtasn1-6
             libp11-kit0 libffi8)

SUDO=""
need_root() {
    if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
        command -v sudo >/dev/null || {
            echo "install-cross-pi: need root to install: $*" >&2
            exit 1
        }
        SUDO="sudo -n"
    fi
}
export DEBIAN_FRONTEND=noninteractive
apt_get() { $SUDO apt-get -o DPkg::Lock::Timeout=600 "$@" </dev/null; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in "${HOST_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
want="${TARGET_PKGS[*]}"
have_sysroot=0
[ -f "$SYSROOT/.eds-sysroot" ] && [ "$(head -n1 "$SYSROOT/.eds-sysroot")" = "$want" ] &&
    have_sysroot=1
[ ${#missing[@]} -eq 0 ] && [ "$have_sysroot" = 1 ] && exit 0

updated=0
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    need_root "dpkg --add-architecture $arch"
    echo "install-cross-pi: dpkg --add-architecture $arch" >&2
    $SUDO dpkg --add-architecture "$arch"
    apt_get update -qq >/dev/null
    updated=1
fi
if [ ${#missing[@]} -gt 0 ]; then
    need_root "${missing[*]}"
    echo "install-cross-pi: installing ${missing[*]}" >&2
    [ "$updated" = 1 ] || apt_get update -qq >/dev/null
    updated=1
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$have_sysroot" = 1 ] && exit 0

if [ "$updated" = 0 ] && ! apt-cache show "libpaho-mqtt-dev:$arch" >/dev/null 2>&1; then
    need_root "apt-get update"
    apt_get update -qq >/dev/null
fi
echo "install-cross-pi: unpacking ${TARGET_PKGS[*]} ($arch) into $SYSROOT" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# _apt cannot write into a private temp folder; download there as is (its
# failure shows as a missing .deb below; its sandbox warning is dropped).
(
    cd "$tmp"
    apt-get download -qq "${TARGET_PKGS[@]/%/:$arch}" </dev/null 2>&1 |
        { grep -v 'couldn.t be accessed by user' >&2 || true; }
) || true
new=$SYSROOT.new
rm -rf "$new"
mkdir -p "$new/root" "$new/debs"
for p in "${TARGET_PKGS[@]}"; do
    debs=("$tmp/${p}_"*"_$arch.deb")
    deb=${debs[0]}
    [ -e "$deb" ] || {
        echo "install-cross-pi: apt-get download $p:$arch failed" >&2
        exit 1
    }
    dpkg-deb -x "$deb" "$new/root"
    dpkg-deb -R "$deb" "$new/debs/$p"
    basename "$deb" >>"$tmp/list"
done
# Absolute symbolic links (libfoo.so -> /lib/...) would point into the host:
# make them relative to the sysroot.
find "$new/root" -type l -lname '/*' | while read -r link; do
    target=$(readlink "$link")
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$new/root$target")" "$link"
done
# cJSON's CMake package names /usr/include and /usr/lib/TRIPLET literally:
# point them at the sysroot (where it will be after the rename below).
sed -i "s|\"/usr|\"$SYSROOT/root/usr|g" "$new/root/usr/lib/$TRIPLET/cmake/cJSON/"*.cmake
# libmicrohttpd.pc names gnutls as a private requirement for static links only;
# the gateway links it dynamically (libgnutls30 is unpacked for the linker and
# qemu), so the sysroot needs no gnutls development package.
sed -i '/^Requires.private:/d' "$new/root/usr/lib/$TRIPLET/pkgconfig/libmicrohttpd.pc"
[ -e "$new/root/usr/lib/$TRIPLET/libpaho-mqtt3as.so" ] || {
    echo "install-cross-pi: no libpaho-mqtt3as.so in the unpacked packages" >&2
    exit 1
}
{
    echo "$want"
    cat "$tmp/list"
} >"$new/.eds-sysroot"
rm -rf "$SYSROOT"
mv "$new" "$SYSROOT"
