#!/usr/bin/env bash
# Installs what the myRIO (armel) cross build and its qemu tests need, if
# missing: Debian's gcc-arm-linux-gnueabi, qemu-user, cJSON, cmocka and
# libatomic (the armel libcrypto needs it) as armel multiarch packages, and
# OpenSSL for armel unpacked into a sysroot folder (libssl-dev:armel cannot
# be co-installed: multiarch needs the same version as the host's libssl3,
# which security updates move ahead of it). Idempotent, non-interactive,
# and quiet when everything is there; needs root (or sudo) only when
# something is missing.
#
# The sysroot is $EDS_ARM_SYSROOT, else ${XDG_CACHE_HOME:-$HOME/.cache}/eds/
# armel-sysroot, else (no HOME) /var/cache/eds/armel-sysroot;
# (scripts/sysroot-path.sh, which cmake/toolchain-myrio.cmake uses too). Debian has no static
# armel cJSON: its source package (apt-get source cjson; the deb-src lines
# are added to /etc/apt/sources.list.d/eds-deb-src.sources when apt has
# none) is unpacked, Debian's patches applied, next to the sysroot in
# .../eds/cjson-src, and built by the myRIO build (cmake/SelfContained.cmake).
# Usage: scripts/install-cross.sh [--print-sysroot | --print-cjson-source]
set -euo pipefail

TRIPLET=arm-linux-gnueabi
PKGS=(gcc-arm-linux-gnueabi libc6-dev-armel-cross qemu-user pkg-config file dpkg-dev libc6:armel
      libatomic1:armel libcjson-dev:armel libcmocka-dev:armel)
SYSROOT=$("$(dirname "$0")/sysroot-path.sh" armel-sysroot "${EDS_ARM_SYSROOT:-}")

CJSON_SRC=$(dirname "$SYSROOT")/cjson-src

case "${1:-}" in
--print-sysroot)
    echo "$SYSROOT"
    exit 0
    ;;
--print-cjson-source)
    echo "$CJSON_SRC/source"
    exit 0
    ;;
-h | --help)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*)
    echo "install-cross: unknown option '$1'" >&2
    exit 2
    ;;
esac

SUDO=""
need_root() {
    if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
        command -v sudo >/dev/null || {
            echo "install-cross: need root to install: $*" >&2
            exit 1
        }
        SUDO="sudo -n"
    fi
}
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
have_sysroot=0
[ -e "$SYSROOT/usr/lib/$TRIPLET/libcrypto.a" ] && [ -f "$SYSROOT/.eds-sysroot" ] && have_sysroot=1
have_cjson=0
[ -f "$CJSON_SRC/source/cJSON.c" ] && have_cjson=1
[ ${#missing[@]} -eq 0 ] && [ "$have_sysroot" = 1 ] && [ "$have_cjson" = 1 ] && exit 0

updated=0
if [ ${#missing[@]} -gt 0 ]; then
    need_root "${missing[*]}"
    if ! dpkg --print-foreign-architectures | grep -qx armel; then
        echo "install-cross: dpkg --add-architecture armel" >&2
        $SUDO dpkg --add-architecture armel
    fi
    echo "install-cross: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq </dev/null >/dev/null
    updated=1
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

if [ "$have_sysroot" = 0 ]; then
    # apt-get download needs the armel package lists, not root.
    if [ "$updated" = 0 ] && ! apt-cache show libssl-dev:armel >/dev/null 2>&1; then
        need_root "apt-get update"
        $SUDO apt-get update -qq </dev/null >/dev/null
    fi
    echo "install-cross: unpacking libssl-dev:armel libssl3:armel into $SYSROOT" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # _apt cannot write into a private temp folder; download there as is.
    # (its failure shows as no .deb below; its sandbox warning is dropped)
    (
        cd "$tmp"
        apt-get download -qq libssl-dev:armel libssl3:armel </dev/null 2>&1 |
            { grep -v 'couldn.t be accessed by user' >&2 || true; }
    ) || true
    debs=("$tmp"/*.deb)
    [ -e "${debs[0]}" ] || {
        echo "install-cross: apt-get download libssl-dev:armel libssl3:armel failed" >&2
        exit 1
    }
    rm -rf "$SYSROOT.new"
    mkdir -p "$SYSROOT.new"
    for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$SYSROOT.new"; done
    [ -e "$SYSROOT.new/usr/lib/$TRIPLET/libcrypto.so.3" ] || {
        echo "install-cross: no libcrypto.so.3 in the downloaded packages" >&2
        exit 1
    }
    for deb in "${debs[@]}"; do basename "$deb"; done >"$SYSROOT.new/.eds-sysroot"
    rm -rf "$SYSROOT"
    mv "$SYSROOT.new" "$SYSROOT"
fi

if [ "$have_cjson" = 0 ]; then
    # apt-get source needs deb-src lines; Debian 12's default sources have none.
    if ! apt-get source --print-uris -qq cjson </dev/null >/dev/null 2>&1; then
        need_root "deb-src lines for apt-get source cjson"
        echo "install-cross: adding /etc/apt/sources.list.d/eds-deb-src.sources (deb-src)" >&2
        printf '%s\n' "# Added by EDS scripts/install-cross.sh: apt-get source cjson for the myRIO build." \
            "Types: deb-src" "URIs: http://deb.debian.org/debian" \
            "Suites: bookworm bookworm-updates" "Components: main" \
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" "" \
            "Types: deb-src" "URIs: http://deb.debian.org/debian-security" \
            "Suites: bookworm-security" "Components: main" \
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" |
            $SUDO tee /etc/apt/sources.list.d/eds-deb-src.sources >/dev/null
        $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null >/dev/null
    fi
    echo "install-cross: apt-get source cjson into $CJSON_SRC" >&2
    rm -rf "$CJSON_SRC.new"
    mkdir -p "$CJSON_SRC.new"
    (
        cd "$CJSON_SRC.new"
        apt-get source --download-only -qq cjson </dev/null 2>&1 |
            { grep -v 'couldn.t be accessed by user' >&2 || true; }
        dsc=$(ls cjson_*.dsc)
        # apt checked the files against the signed Sources index.
        dpkg-source --no-check -x "$dsc" source >/dev/null
    ) || {
        echo "install-cross: apt-get source cjson failed" >&2
        exit 1
    }
    [ -f "$CJSON_SRC.new/source/cJSON.c" ] || {
        echo "install-cross: no cJSON.c in the cjson source package" >&2
        exit 1
    }
    rm -rf "$CJSON_SRC"
    mv "$CJSON_SRC.new" "$CJSON_SRC"
fi
